"""The max preset: a small decoder overfitted to each image at encode time (Cool-chic / C3 family).

- `arch`: the architecture version (latent grids, ARM context, tables) and its digest;
- `network`: the torch modules (autoregressive probability model, upsampler, synthesis);
- `entropy`: fixed-point ARM inference, Laplace tables and wavefront ANS coding;
- `params`: quantisation and Exp-Golomb coding of the network parameters;
- `fit`: the encoder's training loop; `codec`: `encode_image` / `decode_payload`.

Nothing here imports torch at package import time; the container and gate stay light.
"""

from codec_engine.overfit.arch import ARCH, MODEL_ID, MODEL_NAME, QUALITY_LAMBDAS, arch_digest

__all__ = ["ARCH", "MODEL_ID", "MODEL_NAME", "QUALITY_LAMBDAS", "arch_digest"]
