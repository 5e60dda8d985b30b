"""Train the variable-rate mean-scale hyperprior; resumable, time-bounded, CPU or GPU.

Resumes, in order of preference, from the full checkpoint
`training/checkpoints/<model>-last.pt` (weights + Adam state + counters, git-ignored), or
from the committed zoo weights of the model, or starts from scratch. Writes a full
checkpoint every `--checkpoint-minutes` and exports shipped weights (fp16 + z tables, file
named by content hash, superseded files deleted) every `--export-minutes` and at the end,
each export preceded by an evaluation on the held-out test set (history in
training/cache/history.jsonl).

CPU (2 threads, bf16 autocast on the transforms, channels_last):
    nohup nice -n 10 .venv/bin/python -m training.train --minutes 150 \
        > training/cache/train.log 2>&1 &
GPU (picked automatically when CUDA is present; bigger batch and crops):
    python -m training.train --minutes 10 --batch 32 --crop 256
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from PIL import Image
from torch import Tensor
from torch.nn import functional as F

from codec_engine.models.losses import distortion
from codec_engine.models.msh import (
    LAMBDAS,
    MeanScaleHyperprior,
    ModelConfig,
    remap_quality_gains,
)
from codec_engine.zoo.export import export_weights
from codec_engine.zoo.registry import find_weights

ROOT = Path(__file__).resolve().parent
CHECKPOINTS = ROOT / "checkpoints"
CACHE = ROOT / "cache"
DATA = CACHE / "data"
HISTORY = CACHE / "history.jsonl"


def log(msg: str) -> None:
    print(time.strftime("%H:%M:%S"), msg, flush=True)


# ---- data ---------------------------------------------------------------------------------
class CropSampler:
    """Random crops from in-memory images: size weighting, random downscale, flips, rot90."""

    def __init__(self, folder: Path, crop: int, seed: int) -> None:
        paths = sorted(folder.glob("*.png"))
        if not paths:
            raise SystemExit(f"no training images in {folder}: run python -m training.prepare_data")
        self.images: list[npt.NDArray[np.uint8]] = []
        for p in paths:
            with Image.open(p) as im:
                arr = np.asarray(im.convert("RGB"), dtype=np.uint8)
            if min(arr.shape[:2]) >= crop:
                self.images.append(arr)
        areas = np.array([im.shape[0] * im.shape[1] for im in self.images], dtype=np.float64)
        self.weights = np.sqrt(areas) / np.sqrt(areas).sum()
        self.crop = crop
        self.rng = np.random.default_rng(seed)
        self.pixels = int(areas.sum())

    def batch(self, size: int) -> Tensor:
        out = torch.empty(size, 3, self.crop, self.crop)
        for i in range(size):
            img = self.images[int(self.rng.choice(len(self.images), p=self.weights))]
            h, w = img.shape[:2]
            scale = 1.0
            if self.rng.random() < 0.5:
                scale = float(self.rng.uniform(1.0, min(2.0, h / self.crop, w / self.crop)))
            side = max(self.crop, int(self.crop * scale))
            top = int(self.rng.integers(0, h - side + 1))
            left = int(self.rng.integers(0, w - side + 1))
            patch = torch.from_numpy(
                np.ascontiguousarray(img[top : top + side, left : left + side])
            )
            t = patch.permute(2, 0, 1).float().div_(255.0)
            if side != self.crop:
                t = F.interpolate(
                    t[None], size=(self.crop, self.crop), mode="bilinear", antialias=True
                )[0]
            if self.rng.random() < 0.5:
                t = t.flip(2)
            k = int(self.rng.integers(0, 4))
            if k:
                t = torch.rot90(t, k, dims=(1, 2))
            out[i] = t
        return out.clamp_(0.0, 1.0)


# ---- evaluation ---------------------------------------------------------------------------
@torch.no_grad()
def evaluate(net: MeanScaleHyperprior, device: torch.device) -> dict[str, Any]:
    """Estimated bpp (real rounding, likelihood bits) and RGB PSNR per quality, test-set mean."""
    net.eval()
    images = []
    for p in sorted((DATA / "test").glob("*.png")):
        with Image.open(p) as im:
            arr = np.asarray(im.convert("RGB"), dtype=np.uint8)
        images.append(torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div(255.0)[None])
    result: dict[str, Any] = {}
    for q in range(len(LAMBDAS)):
        bpps, psnrs = [], []
        for x in images:
            h, w = x.shape[2:]
            ph, pw = (-h) % 64, (-w) % 64
            xp = F.pad(x, (0, pw, 0, ph), mode="replicate").to(device)
            out = net(xp, torch.tensor([q], device=device), bf16=False)
            rgb = MeanScaleHyperprior.from_output(out.x_hat_ycc - 0.5)[:, :, :h, :w].cpu()
            rgb = torch.round(rgb * 255) / 255
            mse = float(((rgb - x) ** 2).mean())
            bpps.append(float(out.bits_y.sum() + out.bits_z.sum()) / (h * w))
            psnrs.append(10 * math.log10(1.0 / max(mse, 1e-12)))
        result[f"q{q + 1}"] = [round(float(np.mean(bpps)), 4), round(float(np.mean(psnrs)), 2)]
    net.train()
    return result


# ---- checkpointing ------------------------------------------------------------------------
def load_start(
    net: MeanScaleHyperprior, opt: torch.optim.Optimizer, name: str, fresh: bool
) -> dict[str, Any]:
    state: dict[str, Any] = {"iteration": 0, "seconds": 0.0, "source": "scratch"}
    last = CHECKPOINTS / f"{name}-last.pt"
    if fresh:
        return state
    if last.exists():
        ck = torch.load(last, map_location="cpu", weights_only=True)
        net.load_state_dict(ck["model"])
        try:
            opt.load_state_dict(ck["optimizer"])
        except ValueError:
            log("optimizer state does not fit; starting Adam afresh")
        _adopt_lambdas(net, ck.get("lambdas", LAMBDAS))
        state.update(iteration=ck["iteration"], seconds=ck["seconds"], source=str(last))
        return state
    try:
        info = find_weights(name)
    except Exception:
        return state
    payload = torch.load(info.path, map_location="cpu", weights_only=True)
    net.load_state_dict(
        {k: v.float() if v.is_floating_point() else v for k, v in payload["state_dict"].items()}
    )
    _adopt_lambdas(net, payload.get("lambdas", LAMBDAS))
    meta = payload.get("meta", {})
    state.update(
        iteration=int(meta.get("iterations", 0)),
        seconds=float(meta.get("train_seconds", 0.0)),
        source=str(info.path),
    )
    return state


def _adopt_lambdas(net: MeanScaleHyperprior, trained_for: Sequence[float]) -> None:
    # Weights trained for other rate weights per level keep their transforms; only the
    # gain vectors move (interpolated in log-lambda), and training adapts them from there.
    if tuple(float(v) for v in trained_for) != LAMBDAS:
        log(f"quality levels re-spaced: lambdas {list(trained_for)} -> {list(LAMBDAS)}")
        remap_quality_gains(net, trained_for, LAMBDAS)


def save_checkpoint(
    net: MeanScaleHyperprior, opt: torch.optim.Optimizer, name: str, iteration: int, seconds: float
) -> None:
    CHECKPOINTS.mkdir(parents=True, exist_ok=True)
    target = CHECKPOINTS / f"{name}-last.pt"
    tmp = target.with_suffix(".tmp")
    torch.save(
        {
            "model": net.state_dict(),
            "optimizer": opt.state_dict(),
            "iteration": iteration,
            "seconds": seconds,
            "lambdas": list(LAMBDAS),
        },
        tmp,
    )
    tmp.replace(target)


# ---- main loop ----------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Train the codec network (resumable).")
    parser.add_argument("--model", default="msh-v1")
    parser.add_argument("--n", type=int, default=96)
    parser.add_argument("--m", type=int, default=128)
    parser.add_argument("--minutes", type=float, default=60.0, help="wall-clock budget")
    parser.add_argument("--batch", type=int, default=0, help="0: 8 on CPU, 32 on GPU")
    parser.add_argument("--crop", type=int, default=0, help="0: 128 on CPU, 256 on GPU")
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--final-lr", type=float, default=5e-5)
    parser.add_argument(
        "--decay-fraction", type=float, default=0.2, help="of the budget, at the end"
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--export-minutes", type=float, default=15.0)
    parser.add_argument("--checkpoint-minutes", type=float, default=5.0)
    parser.add_argument("--fresh", action="store_true", help="ignore checkpoints and zoo weights")
    parser.add_argument("--no-export", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed + int(time.time()) % 100000)
    random.seed(args.seed)
    batch = args.batch or (32 if cuda else 8)
    crop = args.crop or (256 if cuda else 128)

    net = MeanScaleHyperprior(ModelConfig(n=args.n, m=args.m)).to(device)
    net = net.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(net.parameters(), lr=args.lr)
    start = load_start(net, opt, args.model, args.fresh)
    iteration, prior_seconds = int(start["iteration"]), float(start["seconds"])
    sampler = CropSampler(DATA / "train", crop, seed=args.seed + iteration)
    lambdas = torch.tensor(LAMBDAS, device=device)
    log(
        f"start from {start['source']} at iteration {iteration}; device {device}, "
        f"batch {batch}x{crop}^2, "
        f"{len(sampler.images)} images / {sampler.pixels / 1e6:.0f} MP, "
        f"{sum(p.numel() for p in net.parameters()) / 1e6:.2f} M params"
    )

    budget = args.minutes * 60.0
    t0 = time.time()
    last_ck = last_export = t0
    run_start_iter = iteration
    acc: dict[str, float] = {"loss": 0.0, "bpp": 0.0, "psnr": 0.0, "n": 0.0}

    def export(tag: str) -> None:
        nonlocal last_export
        elapsed = prior_seconds + time.time() - t0
        metrics = evaluate(net, device)
        row = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "iteration": iteration,
            "train_hours": round(elapsed / 3600, 3),
            "tag": tag,
            "test": metrics,
        }
        CACHE.mkdir(parents=True, exist_ok=True)
        with HISTORY.open("a") as fh:
            fh.write(json.dumps(row) + "\n")
        log(f"eval {json.dumps(metrics)}")
        if not args.no_export:
            path = export_weights(
                net.to("cpu"),
                args.model,
                meta={"iterations": iteration, "train_seconds": round(elapsed, 1), "test": metrics},
            )
            net.to(device)
            log(f"exported {path.name}")
        last_export = time.time()

    while True:
        now = time.time()
        frac = (now - t0) / budget
        if frac >= 1.0:
            break
        decay_start = 1.0 - args.decay_fraction
        if frac < decay_start:
            lr = args.lr
        else:
            t = (frac - decay_start) / max(args.decay_fraction, 1e-9)
            lr = args.final_lr + 0.5 * (args.lr - args.final_lr) * (1 + math.cos(math.pi * t))
        if iteration - run_start_iter < 200 and start["source"] == "scratch":
            lr *= (iteration - run_start_iter + 1) / 200
        for group in opt.param_groups:
            group["lr"] = lr

        x = sampler.batch(batch).to(device).contiguous(memory_format=torch.channels_last)
        q = torch.randint(0, len(LAMBDAS), (batch,), device=device)
        out = net(x, q)
        dist = distortion(x, out.x_hat_ycc)
        bpp = (out.bits_y + out.bits_z) / (crop * crop)
        loss = (lambdas[q] * 255.0**2 * dist + bpp).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        iteration += 1

        with torch.no_grad():
            mse = ((MeanScaleHyperprior.from_output(out.x_hat_ycc.detach() - 0.5) - x) ** 2).mean()
        acc["loss"] += loss.item()
        acc["bpp"] += float(bpp.mean())
        acc["psnr"] += 10 * math.log10(1.0 / max(float(mse), 1e-12))
        acc["n"] += 1
        if iteration % 100 == 0:
            n = acc["n"]
            speed = (time.time() - t0) / max(iteration - run_start_iter, 1)
            log(
                f"it {iteration} loss {acc['loss'] / n:.3f} bpp {acc['bpp'] / n:.3f} "
                f"psnr {acc['psnr'] / n:.2f} lr {lr:.2e} {speed:.3f} s/it"
            )
            acc = dict.fromkeys(acc, 0.0)
        if time.time() - last_ck > args.checkpoint_minutes * 60:
            save_checkpoint(net, opt, args.model, iteration, prior_seconds + time.time() - t0)
            last_ck = time.time()
        if time.time() - last_export > args.export_minutes * 60:
            export("periodic")

    save_checkpoint(net, opt, args.model, iteration, prior_seconds + time.time() - t0)
    export("final")
    log(f"done at iteration {iteration}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
