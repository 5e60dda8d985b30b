"""Neural codec engine: a learned image/video codec, its bitstream, baselines and licence gate.

Importing this package is cheap (no torch). The heavy parts load on first use:
`codec_engine.api` (load_model, encode, decode, compare), `codec_engine.container` (the
bitstream), `codec_engine.gate` (licence checks), `codec_engine.baselines`.
"""

__version__ = "0.1.0"
