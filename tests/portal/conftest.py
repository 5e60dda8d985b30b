"""Fixtures of the portal suites: the two-customer world, signed-in clients, media in tmp."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from licences import keys
from licences.services import revocation_cache_invalidate

from tests.portal.world import PASSWORD, World, build_world


@pytest.fixture(autouse=True)
def _portal_settings(settings: Any, tmp_path: Path) -> None:
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    # Hashing strength is not under test here; PBKDF2's cost would dominate the suite.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    # Plain static storage: the live server serves app static files without collectstatic.
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    keys.keyring_invalidate()
    revocation_cache_invalidate()


@pytest.fixture
def world(db: None) -> World:
    return build_world()


def signed_in(username: str, **client_kwargs: Any) -> Client:
    client = Client(**client_kwargs)
    response = client.post("/portal/sign-in/", {"username": username, "password": PASSWORD})
    assert response.status_code == 302, response.content[:2000]
    return client


@pytest.fixture
def alice(world: World) -> Client:
    return signed_in("alice")


@pytest.fixture
def victor(world: World) -> Client:
    return signed_in("victor")


@pytest.fixture
def bob(world: World) -> Client:
    return signed_in("bob")
