"""Fixtures shared by the control-plane suites."""

from tests.core.fixtures import *  # noqa: F403
