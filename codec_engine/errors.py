"""Errors of the codec engine. The CLI prints any `EngineError` as one line and exits non-zero."""

from __future__ import annotations


class EngineError(Exception):
    """Base of every error the engine reports to a user; `code` is machine-readable."""

    code: str = "ENGINE_ERROR"
    exit_code: int = 2

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class CommandError(EngineError):
    """Bad command-line input (missing file, bad option value)."""

    code = "BAD_INPUT"
