"""Freeze a trained network into a shipped weights file (fp16 tensors + integer z tables)."""

from __future__ import annotations

import dataclasses
import hashlib
import io
from pathlib import Path
from typing import Any

import torch

from codec_engine.entropy import gaussian
from codec_engine.entropy.coder import Y_RADIUS, gaussian_tables
from codec_engine.models.inter import InterPrior
from codec_engine.models.msh import LAMBDAS, MeanScaleHyperprior
from codec_engine.zoo.registry import HASH_PREFIX_LEN, WEIGHTS_DIR, model_spec

WEIGHTS_FORMAT = 1


def export_weights(
    net: MeanScaleHyperprior,
    name: str,
    *,
    directory: Path | None = None,
    meta: dict[str, Any] | None = None,
    keep_old: bool = False,
    inter: InterPrior | None = None,
) -> Path:
    """Write `<name>-<sha16>.pt` atomically; delete superseded files of `name` unless `keep_old`.

    Side effects: creates one file in `directory` and removes the model's older files.
    Idempotent for identical weights (same bytes, same name).
    """
    model_spec(name)
    folder = directory or WEIGHTS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    offsets, freqs = net.density_z.integer_tables()
    state = {
        k: (v.detach().to("cpu", torch.float16) if v.is_floating_point() else v.detach().cpu())
        for k, v in net.state_dict().items()
    }
    payload: dict[str, Any] = {
        "format": WEIGHTS_FORMAT,
        "model": name,
        "config": dataclasses.asdict(net.config),
        "lambdas": list(LAMBDAS),
        "state_dict": state,
        "z_offsets": torch.from_numpy(offsets),
        "z_freqs": torch.from_numpy(freqs),
        "y_pmfs": torch.from_numpy(gaussian_tables(gaussian.SCALE_TABLE, Y_RADIUS)),
        "coding": {
            "scale_min": gaussian.SCALE_MIN,
            "scale_max": gaussian.SCALE_MAX,
            "scale_levels": gaussian.SCALE_LEVELS,
            "mean_grid": gaussian.MEAN_GRID,
        },
        "meta": dict(meta or {}),
    }
    if inter is not None:  # the P-frame prior (codec_engine.models.inter)
        payload["inter"] = {
            "hidden": inter.hidden,
            "state_dict": {
                k: v.detach().to("cpu", torch.float16) for k, v in inter.state_dict().items()
            },
        }
    buf = io.BytesIO()
    torch.save(payload, buf)
    data = buf.getvalue()
    digest = hashlib.sha256(data).hexdigest()[:HASH_PREFIX_LEN]
    target = folder / f"{name}-{digest}.pt"
    tmp = folder / f".{target.name}.tmp"
    tmp.write_bytes(data)
    tmp.replace(target)
    if not keep_old:
        for old in folder.glob(f"{name}-*.pt"):
            if old != target:
                old.unlink()
    return target
