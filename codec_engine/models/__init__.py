"""Codec network definitions."""
