"""`licensing` console script: keygen, retire, issue, inspect, verify.

Exit status: 0 success (verify: every token VALID), 1 verify refused a token, 2 bad input or
usage. Bad input always gives one readable line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn, TextIO

from licensing.claims import (
    DEFAULT_CERTIFICATE_VALIDITY_S,
    CertificateClaims,
    LicenceClaims,
    RevocationList,
)
from licensing.errors import Code, LicensingError
from licensing.fingerprint import Fingerprint
from licensing.keys import Keyring, SigningKey, check_key_id, load_json_object
from licensing.tokens import (
    inspect_token,
    issue_certificate,
    issue_licence_key,
    issue_revocation_list,
    verify_certificate,
    verify_licence_key,
    verify_revocation_list,
)

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_USAGE = 2
_CLAIM_TYPES = ("licence_key", "certificate", "revocation_list")


class UsageError(Exception):
    """Bad input to a subcommand: reported as one line on stderr, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # argparse would print the whole usage block; one line is easier to read in scripts.
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _read_text(path: str, what: str) -> str:
    try:
        if path == "-":
            return sys.stdin.read()
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"{what} {path}: no such file") from None
    except UnicodeDecodeError:
        raise UsageError(f"{what} {path}: not UTF-8 text") from None
    except OSError as exc:
        raise UsageError(f"{what} {path}: {exc.strerror or exc}") from None


def _passphrase(args: argparse.Namespace) -> bytes | None:
    if args.passphrase_file:
        text = _read_text(args.passphrase_file, "passphrase file")
        # Only the line terminator goes: spaces may be part of a passphrase.
        value = text.splitlines()[0] if text else ""
    elif args.passphrase_env:
        if args.passphrase_env not in os.environ:
            raise UsageError(f"environment variable {args.passphrase_env} is not set")
        value = os.environ[args.passphrase_env]
    else:
        return None
    if not value:
        raise UsageError("the passphrase is empty")
    return value.encode("utf-8")


def _add_passphrase_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--passphrase-file", metavar="FILE", help="first line is the passphrase")
    group.add_argument("--passphrase-env", metavar="VAR", help="environment variable to read")


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _load_keyring(path: str) -> Keyring:
    try:
        return Keyring.from_json(_read_text(path, "keyring"))
    except LicensingError as exc:
        raise UsageError(f"keyring {path}: {exc.message}") from None


# ---------------------------------------------------------------------------- keygen / retire


def _cmd_keygen(args: argparse.Namespace, out: TextIO) -> int:
    key_id = check_key_id(args.key_id)
    out_dir = Path(args.out_dir)
    keyring_path = Path(args.keyring) if args.keyring else out_dir / "keyring.json"
    passphrase = _passphrase(args)
    keyring = _load_keyring(str(keyring_path)) if keyring_path.exists() else Keyring()
    if key_id in keyring:
        raise UsageError(f"key id {key_id!r} is already in {keyring_path}")
    key = SigningKey.generate(key_id)
    key_path = out_dir / f"{key_id}.pem"
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        # O_EXCL: never overwrite a private key; 0600 from the first byte on disk.
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), 0o600)
            handle.write(key.to_pem(passphrase))
        keyring.add(key_id, key.public_key_bytes())
        _write_atomic(keyring_path, keyring.to_json())
    except FileExistsError:
        raise UsageError(f"{key_path} exists; choose another key id") from None
    except OSError as exc:
        raise UsageError(f"cannot write {exc.filename}: {exc.strerror}") from None
    state = "encrypted" if passphrase else "NOT encrypted"
    print(f"key id:      {key_id}", file=out)
    print(f"private key: {key_path} (mode 0600, {state})", file=out)
    print(f"keyring:     {keyring_path} ({len(keyring)} key(s); new artifacts: {key_id})", file=out)
    return EXIT_OK


def _cmd_retire(args: argparse.Namespace, out: TextIO) -> int:
    keyring = _load_keyring(args.keyring)
    keyring.retire(args.key_id)
    try:
        _write_atomic(Path(args.keyring), keyring.to_json())
    except OSError as exc:
        raise UsageError(f"cannot write {args.keyring}: {exc.strerror}") from None
    print(f"retired {args.key_id} in {args.keyring}", file=out)
    return EXIT_OK


# ---------------------------------------------------------------------------- issue


def _claims_with_defaults(data: dict[str, Any], now: int) -> tuple[str, dict[str, Any]]:
    kind = data.pop("type", None)
    if kind not in _CLAIM_TYPES:
        raise UsageError(f'claims file needs "type": one of {", ".join(_CLAIM_TYPES)}')
    data.setdefault("issued_at", now)
    if kind != "revocation_list":
        data.setdefault("not_before", data["issued_at"])
        data.setdefault("offline_grace_s", 0)
    if kind == "certificate" and isinstance(data["issued_at"], int):
        data.setdefault("expires_at", data["issued_at"] + DEFAULT_CERTIFICATE_VALIDITY_S)
    return kind, data


def _cmd_issue(args: argparse.Namespace, out: TextIO) -> int:
    key_path = Path(args.key)
    key_id = args.key_id or key_path.stem
    pem = _read_text(args.key, "private key").encode("utf-8")
    key = SigningKey.from_pem(key_id, pem, _passphrase(args))
    now = int(time.time()) if args.now is None else args.now
    kind, data = _claims_with_defaults(
        load_json_object(_read_text(args.claims, "claims file"), "claims file"), now
    )
    if kind == "licence_key":
        token = issue_licence_key(LicenceClaims.from_dict(data), key)
    elif kind == "certificate":
        token = issue_certificate(CertificateClaims.from_dict(data), key)
    else:
        token = issue_revocation_list(RevocationList.from_dict(data), key)
    print(token, file=out)
    return EXIT_OK


# ---------------------------------------------------------------------------- inspect / verify


def _single_token(value: str) -> str:
    if value != "-":
        return value.strip()
    lines = [line.strip() for line in sys.stdin.read().splitlines() if line.strip()]
    if len(lines) != 1:
        raise UsageError("expected exactly one token on standard input")
    return lines[0]


def _cmd_inspect(args: argparse.Namespace, out: TextIO) -> int:
    decoded = inspect_token(_single_token(args.source))
    print("UNVERIFIED: decoded without checking signature, key, dates or revocation", file=out)
    print(json.dumps(decoded, indent=2, ensure_ascii=True), file=out)
    return EXIT_OK


def _verifier(args: argparse.Namespace) -> Callable[[str], None]:
    keyring = _load_keyring(args.keyring)
    revocations = None
    if args.revocations:
        text = _read_text(args.revocations, "revocation list").strip()
        try:
            revocations = verify_revocation_list(text, keyring, min_serial=args.min_serial)
        except LicensingError as exc:
            raise UsageError(f"revocation list {args.revocations}: {exc}") from None
    if args.fingerprint is not None:
        try:
            Fingerprint.from_string(args.fingerprint)
        except LicensingError as exc:
            raise UsageError(f"--fingerprint: {exc.message}") from None
    options: dict[str, Any] = {
        "now": args.now,
        "skew_s": args.skew,
        "revocations": revocations,
        "apply_grace": args.grace,
    }

    def verify(token: str) -> None:
        kind = args.expect or {"NCC": "certificate", "NCR": "revocation_list"}.get(
            token[:3], "licence_key"
        )
        if kind == "certificate":
            verify_certificate(token, keyring, fingerprint=args.fingerprint, **options)
        elif kind == "revocation_list":
            verify_revocation_list(token, keyring, min_serial=args.min_serial)
        else:
            verify_licence_key(token, keyring, **options)

    return verify


def _outcome(verify: Callable[[str], None], token: str, explain: bool) -> tuple[bool, str]:
    try:
        verify(token)
    except LicensingError as exc:
        return False, str(exc) if explain else exc.code.value
    return True, Code.VALID.value


def _stdin_lines() -> Iterator[str]:
    for line in sys.stdin:
        yield line.strip()


def _cmd_verify(args: argparse.Namespace, out: TextIO) -> int:
    verify = _verifier(args)
    source: str = args.source
    tokens: Iterator[str] | list[str] = _stdin_lines() if source == "-" else [source.strip()]
    all_valid = True
    for token in tokens:
        valid, line = _outcome(verify, token, args.explain)
        all_valid = all_valid and valid
        print(line, file=out)
    return EXIT_OK if all_valid else EXIT_REFUSED


# ---------------------------------------------------------------------------- parser / main


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0: {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="licensing", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    keygen = sub.add_parser("keygen", help="new signing key pair + public keyring JSON")
    keygen.add_argument("--key-id", required=True, help="id written into every token it signs")
    keygen.add_argument("--out-dir", default=".", help="where KEY_ID.pem goes (default .)")
    keygen.add_argument("--keyring", help="keyring JSON to create or extend (OUT_DIR/keyring.json)")
    _add_passphrase_options(keygen)
    keygen.set_defaults(handler=_cmd_keygen)

    retire = sub.add_parser("retire", help="retire a key id in a keyring file")
    retire.add_argument("--keyring", required=True)
    retire.add_argument("key_id")
    retire.set_defaults(handler=_cmd_retire)

    issue = sub.add_parser("issue", help="sign a token from a JSON claims file")
    issue.add_argument("--key", required=True, help="private key PEM (from keygen)")
    issue.add_argument("--key-id", help="defaults to the PEM file name without .pem")
    issue.add_argument("--now", type=_non_negative, help="default for issued_at (Unix seconds)")
    _add_passphrase_options(issue)
    issue.add_argument("claims", help='claims JSON file with "type", or - for stdin')
    issue.set_defaults(handler=_cmd_issue)

    inspect = sub.add_parser("inspect", help="decode a token WITHOUT verifying it")
    inspect.add_argument("source", metavar="TOKEN", help="the token, or - for stdin")
    inspect.set_defaults(handler=_cmd_inspect)

    verify = sub.add_parser("verify", help="verify tokens; prints VALID or the code")
    verify.add_argument("--keyring", required=True)
    verify.add_argument("--now", type=_non_negative, help="Unix seconds (default: the clock)")
    verify.add_argument("--skew", type=_non_negative, default=300, help="seconds (default 300)")
    verify.add_argument("--revocations", metavar="FILE", help="revocation list token file")
    verify.add_argument("--min-serial", type=_non_negative, default=0)
    verify.add_argument("--fingerprint", help="this machine's fingerprint (certificates)")
    verify.add_argument("--grace", action="store_true", help="apply the offline grace")
    verify.add_argument("--expect", choices=_CLAIM_TYPES, help="refuse other kinds")
    verify.add_argument("--explain", action="store_true", help="print CODE: reason")
    verify.add_argument(
        "source", metavar="TOKEN", help="the token, or - for one token per line on stdin"
    )
    verify.set_defaults(handler=_cmd_verify)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # usage errors and --help: keep main() returning a status
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    handler: Callable[[argparse.Namespace, TextIO], int] = args.handler
    try:
        return handler(args, sys.stdout)
    except (UsageError, LicensingError) as exc:
        print(f"licensing {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # Output closed early (e.g. piped into head): silence the flush at exit, no traceback.
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except Exception as exc:
        # The promise is one line and no traceback, even for a bug; the type name helps a report.
        print(
            f"licensing {args.command}: internal error: {type(exc).__name__}: {exc}",
            file=sys.stderr,
        )
        return EXIT_USAGE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
