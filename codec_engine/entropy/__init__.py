"""Entropy models (training-time likelihoods) and the constriction-based coders."""
