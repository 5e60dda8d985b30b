"""Model zoo: models by name, weights pinned by content hash in the file name.

Importing this package does not import torch.
"""

from codec_engine.zoo.registry import (
    DEFAULT_MODEL,
    MODELS,
    ModelSpec,
    WeightsInfo,
    find_weights,
    model_spec,
)

__all__ = ["DEFAULT_MODEL", "MODELS", "ModelSpec", "WeightsInfo", "find_weights", "model_spec"]
