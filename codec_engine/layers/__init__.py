"""Neural network building blocks of the codec transforms."""

from codec_engine.layers.gdn import GDN, conv, deconv

__all__ = ["GDN", "conv", "deconv"]
