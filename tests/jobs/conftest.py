"""Fixtures of the encode-job suites: weights, tiny inputs, a customer with an API token, and
(for the integration tests) a real Celery worker process on Redis and PostgreSQL."""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from customers.models import Customer
from django.test import Client
from PIL import Image

from core.models import ApiToken
from core.services import api_token_create
from tests.core.fixtures import *  # noqa: F403
from tests.core.fixtures import TEST_ACTOR

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def codec_weights_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path | None]:
    """The shipped weights when installed; otherwise a small random network exported to a
    temporary folder (the pipeline under test is the same, only the bytes differ)."""
    from codec_engine.errors import EngineError
    from codec_engine.zoo.registry import ENV_WEIGHTS_DIR, find_weights

    if os.environ.get(ENV_WEIGHTS_DIR):
        yield Path(os.environ[ENV_WEIGHTS_DIR])
        return
    try:
        find_weights("msh-v1")
    except EngineError:
        pass
    else:
        yield None
        return
    import torch

    from codec_engine.models.msh import MeanScaleHyperprior, ModelConfig
    from codec_engine.zoo.export import export_weights

    folder = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    export_weights(MeanScaleHyperprior(ModelConfig(n=16, m=24)), "msh-v1", directory=folder)
    os.environ[ENV_WEIGHTS_DIR] = str(folder)
    yield folder
    os.environ.pop(ENV_WEIGHTS_DIR, None)


@pytest.fixture(scope="session")
def media_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.fixture(autouse=True)
def _job_settings(settings: Any, media_root: Path, codec_weights_dir: Path | None) -> None:
    settings.MEDIA_ROOT = media_root


def picture(width: int = 64, height: int = 48, seed: int = 0) -> np.ndarray:
    """A smooth synthetic picture with some texture (compresses like a photo, not like noise)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    base = np.stack(
        [
            128 + 90 * np.sin(x / 9 + seed),
            128 + 90 * np.cos(y / 7),
            128 + 60 * np.sin((x + y) / 11),
        ],
        axis=-1,
    )
    return np.clip(base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8)


def png_bytes(width: int = 64, height: int = 48, seed: int = 0) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(picture(width, height, seed)).save(buf, format="PNG")
    return buf.getvalue()


def corrupt_png(width: int = 64, height: int = 48) -> bytes:
    """A PNG whose header is intact (so the upload checks pass) but whose pixel data is cut."""
    data = png_bytes(width, height)
    return data[: len(data) // 2]


def frames_zip(count: int, width: int = 64, height: int = 48) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for i in range(count):
            zf.writestr(f"seq/frame_{i:04d}.png", png_bytes(width, height, seed=i))
    return buf.getvalue()


@dataclass
class Caller:
    """A Django test client carrying one API token."""

    client: Client
    customer: Customer | None

    def get(self, path: str, **params: Any) -> Any:
        return self.client.get(path, params)

    def post(self, path: str, data: Any = None, **kwargs: Any) -> Any:
        return self.client.post(path, data or {}, **kwargs)

    def submit(self, content: bytes, name: str = "in.png", **fields: Any) -> Any:
        from django.core.files.uploadedfile import SimpleUploadedFile

        upload = SimpleUploadedFile(name, content)
        return self.client.post("/api/v1/jobs/", {"input": upload, **fields})


def caller_for(customer: Customer | None) -> Caller:
    scope = ApiToken.Scope.CUSTOMER if customer is not None else ApiToken.Scope.OPERATOR
    issued = api_token_create(
        actor=TEST_ACTOR,
        name="jobs-tests",
        scope=scope,
        customer_id=customer.pk if customer is not None else None,
    )
    return Caller(Client(HTTP_AUTHORIZATION=f"Bearer {issued.secret}"), customer)


@pytest.fixture
def acme_caller(acme: Customer, acme_licence: Any) -> Caller:
    return caller_for(acme)


@pytest.fixture
def globex_caller(globex: Customer, globex_licence: Any) -> Caller:
    return caller_for(globex)


@pytest.fixture
def make_caller() -> Callable[[Customer | None], Caller]:
    return caller_for
