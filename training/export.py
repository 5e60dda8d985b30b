"""Re-export shipped weights from the full training checkpoint (e.g. after a format change).

python -m training.export [--checkpoint training/checkpoints/msh-v1-last.pt] [--out DIR]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from codec_engine.models.msh import MeanScaleHyperprior, ModelConfig
from codec_engine.zoo.export import export_weights

ROOT = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="msh-v1")
    parser.add_argument("--checkpoint", type=Path)
    parser.add_argument("--out", type=Path, help="default: codec_engine/zoo/weights")
    parser.add_argument("--n", type=int, default=96)
    parser.add_argument("--m", type=int, default=128)
    args = parser.parse_args(argv)
    path = args.checkpoint or ROOT / "checkpoints" / f"{args.model}-last.pt"
    ck = torch.load(path, map_location="cpu", weights_only=True)
    net = MeanScaleHyperprior(ModelConfig(n=args.n, m=args.m))
    net.load_state_dict(ck["model"])
    meta = {"iterations": int(ck["iteration"]), "train_seconds": round(float(ck["seconds"]), 1)}
    print(export_weights(net, args.model, directory=args.out, meta=meta))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
