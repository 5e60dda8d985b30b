"""Verifications per second: our licence key and certificate against their floor and PyJWT.

Four measurements, interleaved in many short rounds (the order rotates each round) so that
noise from other processes hits all four alike; each figure is the median over the rounds.
Rates are per second of this process's CPU time by default (`--clock wall` for elapsed time),
so that time the scheduler gives to other processes on a shared core is not counted:

- licence key:  verify_licence_key (envelope, strict payload parse, key lookup, Ed25519,
                validity window, revocation lookup in a 200-id list, entitlement check)
- certificate:  verify_certificate (the same plus the tolerant fingerprint match)
- bare Ed25519: cryptography's Ed25519PublicKey.verify of the licence key's signed bytes
                (the same number of bytes; the floor every verifier pays)
- PyJWT EdDSA:  jwt.decode of a JWT with equivalent claims (signature, exp/nbf/iat checks)

Nothing is cached between calls: every call parses and verifies the token from scratch (the
keyring keeps parsed public keys, as any verifier would). Target: the licence key at least 80%
of bare Ed25519 and faster than PyJWT. The last line printed is one JSON object.

    .venv/bin/python benchmarks/licensing_verify.py [--rounds 25] [--seconds 0.12] [--clock cpu]
"""

from __future__ import annotations

import argparse
import base64
import gc
import hashlib
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from licensing import (
    CertificateClaims,
    Entitlements,
    Keyring,
    LicenceClaims,
    Requirement,
    RevocationList,
    SigningKey,
    fingerprint_from_identifiers,
    issue_certificate,
    issue_licence_key,
    issue_revocation_list,
    signed_message,
    verify_certificate,
    verify_licence_key,
    verify_revocation_list,
)


def _seed(label: str) -> bytes:
    return hashlib.sha256(f"licensing-benchmark/{label}".encode()).digest()


def build_cases() -> dict[str, Callable[[], object]]:
    now = int(time.time())
    key = SigningKey.from_private_bytes("k-2026-01", _seed("k-2026-01"))
    keyring = Keyring()
    # A realistic keyring: an older key still valid, a retired one, the newest one.
    keyring.add(
        "k-2025-01", SigningKey.from_private_bytes("k-2025-01", _seed("old")).public_key_bytes()
    )
    keyring.add(
        "k-2024-01",
        SigningKey.from_private_bytes("k-2024-01", _seed("retired")).public_key_bytes(),
        retired=True,
    )
    keyring.add(key.key_id, key.public_key_bytes())

    entitlements = Entitlements(
        features=("encode", "decode"),
        max_width=3840,
        max_height=2160,
        max_fps=60,
        max_activations=5,
        platforms=("linux-x86_64", "android-arm64"),
        model_versions=("msh-v1",),
    )
    licence = LicenceClaims(
        licence_id="lic_01J9ZK3Q8W6T4M2N7P5R1S0V9X",
        customer_id="cus_01J9ZK3Q8W6T4M2N7P5R1S0V9Y",
        product="ncodec-sdk",
        entitlements=entitlements,
        issued_at=now - 60,
        not_before=now - 60,
        expires_at=now + 365 * 86_400,
        offline_grace_s=7 * 86_400,
    )
    licence_key = issue_licence_key(licence, key)

    fingerprint = fingerprint_from_identifiers(
        _seed("fingerprint-secret"),
        {
            "machine_id": "4c4c4544-0042-3510-8052-b4c04f4d4e31",
            "hostname": "encoder-01",
            "mac": "0242ac110002",
            "disk": "6f1c3d2a-9b8e-4f7a-a1b2-c3d4e5f60718",
            "cpu": "x86_64 AMD EPYC 7763 64-Core Processor",
        },
    )
    device_key = Ed25519PrivateKey.from_private_bytes(_seed("device"))
    certificate = issue_certificate(
        CertificateClaims.for_activation(
            licence,
            activation_id="act_01J9ZK3Q8W6T4M2N7P5R1S0V9Z",
            fingerprint=fingerprint.to_string(),
            device_public_key=device_key.public_key().public_bytes_raw(),
            now=now - 60,
        ),
        key,
    )
    revocations = verify_revocation_list(
        issue_revocation_list(
            RevocationList(
                serial=42,
                issued_at=now - 60,
                licence_ids=frozenset(f"lic_revoked_{i:04d}" for i in range(100)),
                activation_ids=frozenset(f"act_revoked_{i:04d}" for i in range(100)),
            ),
            key,
        ),
        keyring,
    )
    require = Requirement(
        features=("encode",), width=1920, height=1080, fps=30, platform="linux-x86_64"
    )

    # The floor: exactly the bytes the licence key's signature covers.
    _, payload_text, signature_text = licence_key.split(".")
    payload = base64.urlsafe_b64decode(payload_text + "=" * (-len(payload_text) % 4))
    signature = base64.urlsafe_b64decode(signature_text + "==")
    message = signed_message("NCL1", payload)
    public_key = keyring.verifier(key.key_id)

    jwt_private = Ed25519PrivateKey.from_private_bytes(_seed("k-2026-01"))
    jwt_public = jwt_private.public_key()
    jwt_token = jwt.encode(
        {
            "sub": licence.licence_id,
            "cus": licence.customer_id,
            "prd": licence.product,
            "ent": entitlements.to_dict(),
            "iat": licence.issued_at,
            "nbf": licence.not_before,
            "exp": licence.expires_at,
            "grace": licence.offline_grace_s,
        },
        jwt_private,
        algorithm="EdDSA",
        headers={"kid": key.key_id},
    )

    cases: dict[str, Callable[[], object]] = {
        "licence key": lambda: verify_licence_key(
            licence_key, keyring, revocations=revocations, require=require
        ),
        "certificate": lambda: verify_certificate(
            certificate,
            keyring,
            fingerprint=fingerprint,
            revocations=revocations,
            require=require,
        ),
        "bare Ed25519": lambda: public_key.verify(signature, message),
        "PyJWT EdDSA": lambda: jwt.decode(jwt_token, jwt_public, algorithms=["EdDSA"]),
    }
    for case in cases.values():
        case()  # each must succeed before it is timed
    return cases


CLOCKS: dict[str, Callable[[], float]] = {"cpu": time.process_time, "wall": time.perf_counter}


def _batch(case: Callable[[], object], count: int, clock: Callable[[], float]) -> float:
    start = clock()
    for _ in range(count):
        case()
    return count / (clock() - start)


def measure(
    cases: dict[str, Callable[[], object]], rounds: int, seconds: float, clock: str = "cpu"
) -> dict[str, list[float]]:
    timer = CLOCKS[clock]
    # Calibrate one batch size per case so that each batch lasts about `seconds`.
    counts = {name: max(1, int(_batch(case, 300, timer) * seconds)) for name, case in cases.items()}
    rates: dict[str, list[float]] = {name: [] for name in cases}
    names = list(cases)
    for index in range(rounds):
        # Short batches, order rotating every round: a burst of load lands on all four.
        order = names[index % len(names) :] + names[: index % len(names)]
        for name in order:
            gc.collect()
            rates[name].append(_batch(cases[name], counts[name], timer))
    return rates


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=25)
    parser.add_argument("--seconds", type=float, default=0.12, help="per batch")
    parser.add_argument(
        "--clock",
        choices=sorted(CLOCKS),
        default="cpu",
        help="cpu: this process's CPU time (default; other processes on a shared core do not "
        "count); wall: elapsed time",
    )
    args = parser.parse_args(argv)

    rates = measure(build_cases(), args.rounds, args.seconds, args.clock)
    medians = {name: statistics.median(values) for name, values in rates.items()}
    floor = medians["bare Ed25519"]
    print(f"{'verification':<14} {'median/s':>10} {'min/s':>10} {'max/s':>10} {'vs bare':>8}")
    for name, values in rates.items():
        print(
            f"{name:<14} {medians[name]:>10,.0f} {min(values):>10,.0f} {max(values):>10,.0f}"
            f" {medians[name] / floor:>8.1%}"
        )
    licence, certificate = medians["licence key"], medians["certificate"]
    pyjwt = medians["PyJWT EdDSA"]
    print(
        "target: licence key >= 80% of bare Ed25519: "
        f"{'met' if licence >= 0.8 * floor else 'MISSED'}"
        f"; beats PyJWT: {'yes' if licence > pyjwt else 'NO'}"
        f" (certificate: {certificate / floor:.0%} of bare,"
        f" {'beats' if certificate > pyjwt else 'does NOT beat'} PyJWT)"
    )
    print(
        f"{args.rounds} interleaved rounds of ~{args.seconds} s per case ({args.clock} time);"
        " medians; no caching"
    )
    print(
        json.dumps(
            {
                "licence_verify_per_s": round(licence, 1),
                "certificate_verify_per_s": round(certificate, 1),
                "bare_ed25519_verify_per_s": round(floor, 1),
                "pyjwt_verify_per_s": round(pyjwt, 1),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
