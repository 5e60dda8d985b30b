"""Fuzzing (hypothesis, bounded): the licence-key parser raises only LicensingError, and the
HTTP parsers of licence keys (activation) and signed usage batches answer only 4xx to junk."""

from __future__ import annotations

import base64
import contextlib
import json
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import licensing
from tests.reliability import harness

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

EXAMPLES = 2000 if harness.LONG else 150
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
_B64 = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=.")


def _licence_like() -> st.SearchStrategy[str]:
    """Random text, and near-misses of the real format (prefix, dots, base64url parts)."""
    part = _B64.filter(lambda s: "." not in s)
    structured = st.builds(
        lambda prefix, parts: prefix + ".".join(parts),
        st.sampled_from(["NCL1.", "NCC1.", "NCR1.", "NCL2.", "", "ncl1."]),
        st.lists(part, min_size=0, max_size=4),
    )
    return st.one_of(st.text(max_size=300), structured)


@pytest.fixture(scope="module")
def keyring(api_server: tuple[harness.Server, harness.Seed]) -> licensing.Keyring:
    server, _ = api_server
    text = requests.get(server.url + "/.well-known/codec-licensing/keyring.json", timeout=10).text
    return licensing.Keyring.from_json(text)


def test_licence_key_parser_raises_only_its_own_error(
    keyring: licensing.Keyring, api_server: tuple[harness.Server, harness.Seed]
) -> None:
    real = api_server[1].keys[0]
    mutations = st.builds(
        lambda i, c: real[:i] + c + real[i + 1 :],
        st.integers(0, len(real) - 1),
        st.characters(codec="ascii"),
    )

    @FUZZ
    @given(st.one_of(_licence_like(), mutations))
    def check(token: str) -> None:
        for parse in (
            lambda: licensing.verify_licence_key(token, keyring),
            lambda: licensing.inspect_token(token),
        ):
            with contextlib.suppress(licensing.LicensingError):
                parse()

    check()


def test_activation_endpoint_answers_4xx_to_junk_licence_keys(
    api_server: tuple[harness.Server, harness.Seed],
) -> None:
    server, _ = api_server
    session = requests.Session()
    fingerprint, key = harness.new_device()
    statuses: set[int] = set()

    @FUZZ
    @given(_licence_like())
    def check(token: str) -> None:
        body = harness._activation_body("NCL1.x", fingerprint, key)
        body["licence_key"] = token
        response = session.post(server.url + "/api/v1/sdk/activate", json=body, timeout=15)
        statuses.add(response.status_code)
        assert 400 <= response.status_code < 500, (token, response.status_code, response.text)

    check()
    assert statuses


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)


def test_usage_batch_endpoint_answers_4xx_to_junk_batches(
    api_server: tuple[harness.Server, harness.Seed],
) -> None:
    """Correctly signed by a real device (so the parser, not the signature check, sees it)."""
    server, seed = api_server
    fingerprint, key = harness.new_device()
    activated = requests.post(
        server.url + "/api/v1/sdk/activate",
        json=harness._activation_body(seed.keys[1], fingerprint, key),
        timeout=30,
    )
    assert activated.status_code == 201, activated.text
    activation_id = activated.json()["activation_id"]
    session = requests.Session()
    record = st.fixed_dictionaries(
        {},
        optional={
            "id": st.text(max_size=70),
            "seq": st.integers(-(2**70), 2**70),
            "event_time": st.integers(-(2**64), 2**64),
            "frames": st.integers(-5, 2**63),
            "pixels": st.integers(-5, 2**65),
            "duration_ms": st.integers(-5, 2**40),
            "bytes_delivered": st.integers(-(2**64), 2**64),
            "baseline_bytes": st.integers(-(2**64), 2**64),
            "baseline_method": st.text(max_size=40),
            "psnr_db": _JSON,
            "ms_ssim": _JSON,
            "vmaf": _JSON,
        },
    )
    document = st.fixed_dictionaries(
        {"v": st.sampled_from([1, 1, 2, "1", None])},
        optional={
            "activation_id": st.sampled_from([activation_id, "x", None]),
            "batch_id": st.text(max_size=80),
            "sent_at": _JSON,
            "records": st.one_of(st.lists(record, max_size=5), _JSON),
        },
    )
    bodies = st.one_of(
        document.map(lambda d: json.dumps(d).encode()),
        st.binary(max_size=200),
        _JSON.map(lambda d: json.dumps(d).encode()),
        st.just(b'{"v": 1, "x": NaN}'),
    )

    @FUZZ
    @given(bodies)
    def check(body: bytes) -> None:
        signature = licensing.sign_with_device_key(key, licensing.USAGE_BATCH_PURPOSE, body)
        headers: dict[str, Any] = {
            "Content-Type": "application/json",
            "X-Activation-Id": activation_id,
            "X-Usage-Signature": _b64(signature),
        }
        response = session.post(
            server.url + "/api/v1/sdk/usage-batches", data=body, headers=headers, timeout=15
        )
        assert response.status_code < 500, (body[:300], response.status_code, response.text)

    check()
