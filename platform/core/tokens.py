"""API token format: `ncp_<prefix>_<secret>`.

The prefix finds the row, the hash proves the secret."""

from __future__ import annotations

import hashlib
import re
import secrets

TOKEN_RE = re.compile(r"^ncp_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")


def token_generate() -> tuple[str, str]:
    """Return (prefix, full token): 48 bits of lookup prefix and 256 bits of secret."""
    prefix = secrets.token_hex(6)
    return prefix, f"ncp_{prefix}_{secrets.token_urlsafe(32)}"


def token_hash(token: str) -> str:
    # A plain SHA-256 suffices: the secret has 256 bits of entropy, so no dictionary exists for it.
    return hashlib.sha256(token.encode("ascii")).hexdigest()


def token_prefix(token: str) -> str | None:
    match = TOKEN_RE.match(token)
    return match.group(1) if match else None
