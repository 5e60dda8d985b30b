"""Registry of shipped models.

Each model has exactly one weights file `zoo/weights/<model>-<sha256 prefix>.pt`; the
prefix is the first 16 hex digits of the SHA-256 of the file's bytes, and loading checks
it, so a bitstream (which records the full digest) is never decoded with other weights.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from codec_engine.errors import ModelNotFoundError, WeightsError

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
ENV_WEIGHTS_DIR = "CODEC_ENGINE_WEIGHTS_DIR"
HASH_PREFIX_LEN = 16


@dataclass(frozen=True)
class ModelSpec:
    """A model the engine can run: its name (also the licence's model version) and shape."""

    name: str
    model_id: int  # the number written in the bitstream header
    architecture: str
    qualities: int
    description: str


MODELS: dict[str, ModelSpec] = {
    "msh-v1": ModelSpec(
        name="msh-v1",
        model_id=1,
        architecture="mean-scale-hyperprior",
        qualities=8,
        description="Variable-rate mean-scale hyperprior, N=96/M=128, YCbCr, 8 quality levels",
    ),
}
DEFAULT_MODEL = "msh-v1"


@dataclass(frozen=True)
class WeightsInfo:
    """A located, hash-checked weights file."""

    path: Path
    sha256: bytes  # 32 bytes


def weights_dir() -> Path:
    """The shipped weights folder, or $CODEC_ENGINE_WEIGHTS_DIR when set."""
    override = os.environ.get(ENV_WEIGHTS_DIR)
    return Path(override) if override else WEIGHTS_DIR


def model_spec(name: str) -> ModelSpec:
    try:
        return MODELS[name]
    except KeyError:
        known = ", ".join(sorted(MODELS))
        raise ModelNotFoundError(f"unknown model {name!r} (known: {known})") from None


def spec_by_id(model_id: int) -> ModelSpec:
    for spec in MODELS.values():
        if spec.model_id == model_id:
            return spec
    raise ModelNotFoundError(f"the bitstream needs model id {model_id}, which this engine lacks")


def sha256_file(path: Path) -> bytes:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.digest()


def find_weights(name: str, directory: Path | None = None, *, verify: bool = True) -> WeightsInfo:
    """The single weights file of model `name`, its content checked against its file name."""
    model_spec(name)
    folder = directory or weights_dir()
    found = sorted(folder.glob(f"{name}-*.pt"))
    if not found:
        raise ModelNotFoundError(f"no weights for model {name!r} in {folder}")
    if len(found) > 1:
        listed = ", ".join(p.name for p in found)
        raise WeightsError(f"several weights files for model {name!r}: {listed}")
    path = found[0]
    digest = sha256_file(path)
    if verify and not path.stem.endswith(digest.hex()[:HASH_PREFIX_LEN]):
        raise WeightsError(f"weights file {path.name} does not match its content hash")
    return WeightsInfo(path=path, sha256=digest)
