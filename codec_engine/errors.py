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


class InputError(EngineError):
    """An input image, frame sequence or video cannot be read."""

    code = "BAD_INPUT"


class ModelNotFoundError(EngineError):
    """The named model (or the model a bitstream needs) is not in the zoo."""

    code = "MODEL_NOT_FOUND"


class WeightsError(EngineError):
    """A weights file is missing, duplicated, or does not match its content hash."""

    code = "BAD_WEIGHTS"


class BitstreamError(EngineError):
    """A bitstream is not one of ours, or is truncated or corrupted."""

    code = "BAD_BITSTREAM"


class ForeignBitstreamError(BitstreamError):
    """The file does not start with our magic bytes."""

    code = "NOT_A_BITSTREAM"


class UnsupportedBitstreamError(BitstreamError):
    """Our format, but a version, preset or frame type this engine cannot decode."""

    code = "UNSUPPORTED_BITSTREAM"


class TruncatedBitstreamError(BitstreamError):
    """The file ends before the container says it should."""

    code = "TRUNCATED_BITSTREAM"


class CorruptBitstreamError(BitstreamError):
    """A checksum does not match: the bytes were changed after encoding."""

    code = "CORRUPT_BITSTREAM"


class WeightsMismatchError(BitstreamError):
    """The bitstream was encoded with other weights than the ones installed."""

    code = "WEIGHTS_MISMATCH"


class DecodeMismatchError(BitstreamError):
    """The decoder rebuilt other entropy parameters than the encoder used (platform drift)."""

    code = "DECODE_MISMATCH"


class BaselineError(EngineError):
    """A baseline codec is unavailable or failed."""

    code = "BASELINE_FAILED"


class LicenceError(EngineError):
    """The licence gate refused the job; `code` is the licensing library's `Code` value."""

    code = "LICENCE_REFUSED"
    exit_code = 3

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message, code=code)


class SdkError(EngineError):
    """The SDK client (activation, heartbeat, status) could not do what was asked."""

    code = "SDK_ERROR"


class NotActivatedError(SdkError):
    """No activation in the SDK state directory: run `codec-engine activate` first."""

    code = "NOT_ACTIVATED"


class SdkNetworkError(SdkError):
    """The control plane could not be reached (or answered garbage). Offline use continues
    within the certificate's validity and offline grace."""

    code = "NETWORK_ERROR"
    exit_code = 4


class SdkServerError(SdkError):
    """The control plane refused the request; `code` is its machine-readable error code."""

    code = "SERVER_REFUSED"

    def __init__(self, message: str, *, code: str, status: int, details: object = None) -> None:
        super().__init__(message, code=code)
        self.status = status
        self.details = details
