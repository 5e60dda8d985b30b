"""The `licensing` console script: keygen, retire, issue, inspect, verify."""

from __future__ import annotations

import io
import json
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from licensing import Keyring, SigningKey, cli, issue_certificate, issue_revocation_list
from tests.licensing import make_vectors as mv

REPO = Path(__file__).resolve().parents[2]


class Run:
    def __init__(self, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch):
        self.capsys = capsys
        self.monkeypatch = monkeypatch

    def __call__(self, *argv: str, stdin: str = "") -> tuple[int, str, str]:
        self.monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        status = cli.main(list(argv))
        out, err = self.capsys.readouterr()
        return status, out, err


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Run:
    return Run(capsys, monkeypatch)


def one_line_error(err: str) -> str:
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


@pytest.fixture
def keys(tmp_path: Path, run: Run) -> Path:
    status, _, err = run("keygen", "--key-id", "k1", "--out-dir", str(tmp_path))
    assert status == 0, err
    return tmp_path


def write_claims(path: Path, data: dict[str, Any]) -> str:
    path.write_text(json.dumps(data))
    return str(path)


def licence_claims(**changes: Any) -> dict[str, Any]:
    data = {"type": "licence_key", **mv.LICENCE.to_dict(), **changes}
    del data["key_id"]
    return data


# ---------------------------------------------------------------------------- keygen / retire


def test_keygen_writes_a_private_key_0600_and_the_keyring(keys: Path, run: Run) -> None:
    pem = keys / "k1.pem"
    assert stat.S_IMODE(pem.stat().st_mode) == 0o600
    assert pem.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    ring = Keyring.from_json((keys / "keyring.json").read_text())
    assert ring.key_ids() == ["k1"]
    # Rotation: a second key extends the same keyring; the newest is listed last.
    status, out, _ = run("keygen", "--key-id", "k2", "--out-dir", str(keys))
    assert status == 0 and "new artifacts: k2" in out
    assert Keyring.from_json((keys / "keyring.json").read_text()).key_ids() == ["k1", "k2"]


def test_keygen_with_passphrase(tmp_path: Path, run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = tmp_path / "pass.txt"
    secret.write_text("correct horse\n")
    status, out, _ = run(
        "keygen", "--key-id", "k1", "--out-dir", str(tmp_path), "--passphrase-file", str(secret)
    )
    assert status == 0 and "(mode 0600, encrypted)" in out
    pem = (tmp_path / "k1.pem").read_bytes()
    assert SigningKey.from_pem("k1", pem, b"correct horse").key_id == "k1"
    monkeypatch.setenv("LICENSING_PASS", "from env")
    status, _, _ = run(
        "keygen",
        "--key-id",
        "k2",
        "--out-dir",
        str(tmp_path),
        "--keyring",
        str(tmp_path / "other.json"),
        "--passphrase-env",
        "LICENSING_PASS",
    )
    assert status == 0
    assert SigningKey.from_pem("k2", (tmp_path / "k2.pem").read_bytes(), b"from env")
    assert Keyring.from_json((tmp_path / "other.json").read_text()).key_ids() == ["k2"]


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["--key-id", "k1"], "already in"),
        (["--key-id", "bad id"], "key id must be"),
        (["--key-id", "k9", "--passphrase-env", "NO_SUCH_VARIABLE_X"], "is not set"),
        (["--key-id", "k9", "--passphrase-file", "/nonexistent/pass"], "no such file"),
    ],
)
def test_keygen_errors(keys: Path, run: Run, argv: list[str], fragment: str) -> None:
    status, _, err = run("keygen", "--out-dir", str(keys), *argv)
    assert status == 2
    assert fragment in one_line_error(err)


def test_keygen_never_overwrites_a_private_key(tmp_path: Path, run: Run) -> None:
    (tmp_path / "k1.pem").write_text("precious")
    status, _, err = run(
        "keygen", "--key-id", "k1", "--out-dir", str(tmp_path), "--keyring", str(tmp_path / "r")
    )
    assert status == 2 and "exists" in one_line_error(err)
    assert (tmp_path / "k1.pem").read_text() == "precious"


def test_keygen_unwritable_directory(tmp_path: Path, run: Run) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    status, _, err = run(
        "keygen",
        "--key-id",
        "k1",
        "--out-dir",
        str(blocker / "d"),
        "--keyring",
        str(tmp_path / "r"),
    )
    assert status == 2 and "cannot write" in one_line_error(err)


def test_empty_passphrase_is_refused(tmp_path: Path, run: Run) -> None:
    empty = tmp_path / "empty"
    empty.write_text("")
    status, _, err = run(
        "keygen", "--key-id", "k1", "--out-dir", str(tmp_path), "--passphrase-file", str(empty)
    )
    assert status == 2 and "empty" in one_line_error(err)


def test_retire(keys: Path, run: Run) -> None:
    ring = str(keys / "keyring.json")
    assert run("retire", "--keyring", ring, "k1")[0] == 0
    assert Keyring.from_json(Path(ring).read_text()).is_retired("k1")
    status, _, err = run("retire", "--keyring", ring, "nope")
    assert status == 2 and "UNKNOWN_KEY" in one_line_error(err)


def test_retire_unwritable_keyring(keys: Path, run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*_: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(cli, "_write_atomic", fail)
    status, _, err = run("retire", "--keyring", str(keys / "keyring.json"), "k1")
    assert status == 2 and "Permission denied" in one_line_error(err)


# ---------------------------------------------------------------------------- issue / verify


def issue(run: Run, keys: Path, claims: dict[str, Any], *extra: str) -> str:
    status, out, err = run(
        "issue", "--key", str(keys / "k1.pem"), *extra, write_claims(keys / "c.json", claims)
    )
    assert status == 0, err
    return out.strip()


def test_issue_and_verify_a_licence_key(keys: Path, run: Run) -> None:
    token = issue(run, keys, licence_claims())
    ring = str(keys / "keyring.json")
    assert run("verify", "--keyring", ring, "--now", str(mv.NOW), token) == (0, "VALID\n", "")
    late = str(mv.LICENCE.expires_at + 300)
    assert run("verify", "--keyring", ring, "--now", late, token) == (1, "EXPIRED\n", "")
    status, out, _ = run("verify", "--keyring", ring, "--now", late, "--explain", token)
    assert status == 1 and out.startswith("EXPIRED: expired at")
    assert run("verify", "--keyring", ring, "--now", late, "--grace", token)[0] == 0
    padded = f"  {token}\n"  # copy-paste slack around a single token is forgiven
    assert run("verify", "--keyring", ring, "--now", str(mv.NOW), padded)[1] == "VALID\n"


def test_issue_defaults_issued_at_to_now(keys: Path, run: Run) -> None:
    claims = licence_claims()
    del claims["issued_at"], claims["not_before"], claims["offline_grace_s"]
    token = issue(run, keys, claims, "--now", "1000")
    _, out, _ = run("inspect", token)
    decoded = json.loads(out.split("\n", 1)[1])
    assert decoded["claims"]["issued_at"] == 1000
    assert decoded["claims"]["not_before"] == 1000
    assert decoded["claims"]["offline_grace_s"] == 0


def test_issue_certificate_and_revocation_list(keys: Path, run: Run) -> None:
    cert = mv.CERTIFICATE.to_dict()
    del cert["key_id"], cert["expires_at"]
    token = issue(run, keys, {"type": "certificate", **cert})
    ring = str(keys / "keyring.json")
    decoded = json.loads(run("inspect", token)[1].split("\n", 1)[1])
    assert decoded["claims"]["expires_at"] == cert["issued_at"] + 30 * 86_400
    fingerprint = mv.FINGERPRINT.to_string()
    now = str(mv.NOW)
    assert run("verify", "--keyring", ring, "--now", now, "--fingerprint", fingerprint, token)[
        1
    ] == ("VALID\n")
    other = mv.TWO_CHANGED.to_string()
    assert run("verify", "--keyring", ring, "--now", now, "--fingerprint", other, token) == (
        1,
        "FINGERPRINT_MISMATCH\n",
        "",
    )
    rl = {"type": "revocation_list", "serial": 3, "licence_ids": [], "activation_ids": []}
    rl["activation_ids"] = [mv.CERTIFICATE.activation_id]
    rl_token = issue(run, keys, rl)
    assert run("verify", "--keyring", ring, rl_token)[1] == "VALID\n"
    assert run("verify", "--keyring", ring, "--min-serial", "4", rl_token)[1] == (
        "STALE_REVOCATION_LIST\n"
    )
    rl_file = keys / "rl.txt"
    rl_file.write_text(rl_token + "\n")
    status, out, _ = run(
        "verify", "--keyring", ring, "--now", now, "--revocations", str(rl_file), token
    )
    assert (status, out) == (1, "REVOKED\n")
    status, out, _ = run("verify", "--keyring", ring, "--expect", "licence_key", token)
    assert (status, out) == (1, "WRONG_PURPOSE\n")


def test_issue_with_encrypted_key(tmp_path: Path, run: Run) -> None:
    secret = tmp_path / "pass"
    secret.write_text("pw")
    run("keygen", "--key-id", "k1", "--out-dir", str(tmp_path), "--passphrase-file", str(secret))
    claims = write_claims(tmp_path / "c.json", licence_claims())
    key = str(tmp_path / "k1.pem")
    status, out, _ = run("issue", "--key", key, "--passphrase-file", str(secret), claims)
    assert status == 0 and out.startswith("NCL1.")
    status, _, err = run("issue", "--key", key, claims)
    assert status == 2 and "passphrase is needed" in one_line_error(err)


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("{", "not valid JSON"),
        ("[]", "JSON object"),
        ('{"licence_id": "x"}', '"type"'),
        (json.dumps(licence_claims(colour="red")), "unknown field"),
        (json.dumps(licence_claims(expires_at="soon")), "expires_at"),
        (json.dumps(licence_claims(product="x" * 5000)), "longer than"),
    ],
)
def test_issue_bad_claims(keys: Path, run: Run, content: str, fragment: str) -> None:
    path = keys / "c.json"
    path.write_text(content)
    status, out, err = run("issue", "--key", str(keys / "k1.pem"), str(path))
    assert status == 2 and out == ""
    assert fragment in one_line_error(err)


def test_issue_reads_claims_from_stdin(keys: Path, run: Run) -> None:
    status, out, _ = run(
        "issue", "--key", str(keys / "k1.pem"), "-", stdin=json.dumps(licence_claims())
    )
    assert status == 0 and out.startswith("NCL1.")


def test_issue_missing_or_binary_files(keys: Path, run: Run) -> None:
    status, _, err = run("issue", "--key", str(keys / "nope.pem"), "c.json")
    assert status == 2 and "no such file" in one_line_error(err)
    binary = keys / "bin.json"
    binary.write_bytes(b"\xff\xfe")
    status, _, err = run("issue", "--key", str(keys / "k1.pem"), str(binary))
    assert status == 2 and "not UTF-8" in one_line_error(err)
    status, _, err = run("issue", "--key", str(keys), str(binary))
    assert status == 2 and one_line_error(err)


def test_batch_verify_from_stdin(keys: Path, run: Run) -> None:
    valid = issue(run, keys, licence_claims())
    other_key = SigningKey.generate("k9")
    cert = issue_certificate(mv.CERTIFICATE, other_key)
    lines = [valid, "garbage", "", cert, mv.flip_signature(valid), "NCL2" + valid[4:]]
    status, out, err = run(
        "verify",
        "--keyring",
        str(keys / "keyring.json"),
        "--now",
        str(mv.NOW),
        "-",
        stdin="\n".join(lines) + "\n",
    )
    assert status == 1 and err == ""
    assert out.splitlines() == [
        "VALID",
        "MALFORMED",
        "MALFORMED",
        "UNKNOWN_KEY",
        "BAD_SIGNATURE",
        "UNSUPPORTED_VERSION",
    ]
    status, out, _ = run(
        "verify", "--keyring", str(keys / "keyring.json"), "--now", str(mv.NOW), "-", stdin=valid
    )
    assert (status, out) == (0, "VALID\n")


def test_verify_bad_inputs(keys: Path, run: Run, tmp_path: Path) -> None:
    status, _, err = run("verify", "--keyring", str(tmp_path / "missing.json"), "NCL1.a.b")
    assert status == 2 and "no such file" in one_line_error(err)
    broken = tmp_path / "broken.json"
    broken.write_text('{"format": 1}')
    status, _, err = run("verify", "--keyring", str(broken), "NCL1.a.b")
    assert status == 2 and "keyring" in one_line_error(err)
    bad_rl = tmp_path / "rl.txt"
    bad_rl.write_text(issue_revocation_list(mv.REVOCATIONS, SigningKey.generate("zz")))
    status, _, err = run(
        "verify", "--keyring", str(keys / "keyring.json"), "--revocations", str(bad_rl), "x"
    )
    assert status == 2 and "UNKNOWN_KEY" in one_line_error(err)
    status, _, err = run(
        "verify", "--keyring", str(keys / "keyring.json"), "--fingerprint", "fp0:x", "x"
    )
    assert status == 2 and "--fingerprint" in one_line_error(err)


# ---------------------------------------------------------------------------- inspect


def test_inspect_is_labelled_unverified(keys: Path, run: Run) -> None:
    token = issue(run, keys, licence_claims())
    status, out, _ = run("inspect", token)
    header, body = out.split("\n", 1)
    assert status == 0 and header.startswith("UNVERIFIED")
    decoded = json.loads(body)
    assert decoded["verified"] is False and decoded["key_id"] == "k1"
    assert run("inspect", "-", stdin=f"\n{token}\n")[1] == out


def test_inspect_bad_input(run: Run) -> None:
    status, out, err = run("inspect", "NCL1.%%%.x")
    assert status == 2 and out == "" and "MALFORMED" in one_line_error(err)
    status, _, err = run("inspect", "-", stdin="a\nb\n")
    assert status == 2 and "exactly one token" in one_line_error(err)


# ---------------------------------------------------------------------------- parser and main


@pytest.mark.parametrize(
    "argv",
    [[], ["frobnicate"], ["verify"], ["verify", "--keyring"], ["verify", "--now", "-5", "x"]],
)
def test_usage_errors_are_one_line(run: Run, argv: list[str]) -> None:
    status, _, err = run(*argv)
    assert status == 2
    assert one_line_error(err).startswith("licensing")


def test_non_integer_option(run: Run) -> None:
    status, _, err = run("verify", "--keyring", "k", "--skew", "soon", "x")
    assert status == 2 and "not an integer" in one_line_error(err)


def test_help_exits_zero(run: Run) -> None:
    status, out, _ = run("--help")
    assert status == 0 and "keygen" in out


@pytest.mark.parametrize(
    ("exc", "status", "fragment"),
    [
        (RuntimeError("boom"), 2, "internal error: RuntimeError: boom"),
        (KeyboardInterrupt(), 130, ""),
        (BrokenPipeError(), 0, ""),
    ],
)
def test_unexpected_errors_never_show_a_traceback(
    run: Run, monkeypatch: pytest.MonkeyPatch, exc: BaseException, status: int, fragment: str
) -> None:
    def explode(*_: object) -> int:
        raise exc

    monkeypatch.setattr(cli, "_cmd_inspect", explode)
    got, _, err = run("inspect", "x")
    assert got == status
    if fragment:
        assert fragment in one_line_error(err)


def test_module_entry_point_end_to_end(keys: Path) -> None:
    # The real process: exit codes and streams as a shell script would see them.
    command = [sys.executable, "-m", "licensing", "verify", "--keyring"]
    done = subprocess.run(
        [*command, str(keys / "keyring.json"), "NCL1.x"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stdout, done.stderr) == (1, "MALFORMED\n", "")
    done = subprocess.run(
        [*command, str(keys / "nothing.json"), "NCL1.x"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2 and done.stdout == ""
    assert one_line_error(done.stderr)


def test_python_dash_m_runs_main(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import runpy

    monkeypatch.setattr(sys, "argv", ["licensing", "inspect", "nope"])
    with pytest.raises(SystemExit) as info:
        runpy.run_module("licensing", run_name="__main__")
    assert info.value.code == 2
    assert "MALFORMED" in one_line_error(capsys.readouterr().err)
