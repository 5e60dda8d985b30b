"""`codec-engine activate | heartbeat | status | deactivate`: the SDK client on the command line.

Each handler returns an exit status; failures raise `EngineError` subclasses, which the CLI
prints as one line (network: exit 4, licence refused: exit 3, other: exit 2).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
from pathlib import Path
from typing import Any

import licensing
from codec_engine.errors import CommandError, LicenceError
from codec_engine.sdk.client import ENV_SERVER, SdkClient, StatusReport
from codec_engine.sdk.state import ENV_HOME

ENV_LICENCE_KEY = "CODEC_ENGINE_LICENCE_KEY"


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--state-dir",
        type=Path,
        help=f"SDK state directory (default ${ENV_HOME} or ~/.config/codec-engine)",
    )
    parser.add_argument(
        "--server", help=f"control-plane URL (default ${ENV_SERVER}, then the activation's)"
    )
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per request")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    activate = subparsers.add_parser("activate", help="activate this machine on a licence")
    activate.add_argument(
        "--licence-key",
        help=f"the licence key, or a path to a file holding it (default ${ENV_LICENCE_KEY})",
    )
    activate.add_argument("--hostname", help="name shown to the licence owner")
    _common(activate)
    activate.set_defaults(handler=cmd_activate)

    heartbeat = subparsers.add_parser(
        "heartbeat", help="renew the activation certificate and fetch the licence state"
    )
    _common(heartbeat)
    heartbeat.set_defaults(handler=cmd_heartbeat)

    status = subparsers.add_parser(
        "status", help="verify the stored certificate offline and show state, expiry, grace"
    )
    status.add_argument("--now", type=int, help=argparse.SUPPRESS)  # tests: pretend time
    _common(status)
    status.set_defaults(handler=cmd_status)

    deactivate = subparsers.add_parser("deactivate", help="free this machine's seat")
    _common(deactivate)
    deactivate.set_defaults(handler=cmd_deactivate)


def _client(args: argparse.Namespace) -> SdkClient:
    if args.timeout <= 0:
        raise CommandError("--timeout must be positive")
    return SdkClient(state_dir=args.state_dir, server_url=args.server, timeout_s=args.timeout)


def _when(ts: int | None) -> str:
    if not ts:
        return "never"
    return dt.datetime.fromtimestamp(ts, tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _span(seconds: int) -> str:
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    return f"{sign}{days}d {hours}h {rest // 60}m" if days else f"{sign}{hours}h {rest // 60}m"


def _licence_key(value: str | None) -> str:
    raw = value or os.environ.get(ENV_LICENCE_KEY)
    if not raw:
        raise CommandError(f"pass --licence-key (or set {ENV_LICENCE_KEY})")
    raw = raw.strip()
    if raw.startswith(licensing.LICENCE_PREFIX):
        return raw
    path = Path(raw).expanduser()
    try:
        is_file = path.is_file()
    except OSError:  # "file name too long" and friends: it is a key, not a path
        is_file = False
    if not is_file:
        return raw
    try:
        return path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise CommandError(f"cannot read the licence key file {path}: {exc}") from None


def _entitlements(ent: dict[str, Any]) -> str:
    features = ",".join(ent.get("features") or []) or "none"
    size = f"{ent.get('max_width') or 'any'}x{ent.get('max_height') or 'any'}"
    fps = ent.get("max_fps") or "any"
    platforms = ",".join(ent.get("platforms") or []) or "any"
    models = ",".join(ent.get("model_versions") or []) or "any"
    return (
        f"features={features} max={size}@{fps}fps seats={ent.get('max_activations', 0)} "
        f"platforms={platforms} models={models}"
    )


def cmd_activate(args: argparse.Namespace) -> int:
    client = _client(args)
    record = client.activate(_licence_key(args.licence_key), hostname=args.hostname)
    if args.json:
        print(json.dumps({"activation_id": record.activation_id, "licence_id": record.licence_id}))
        return 0
    print(f"activated    {record.activation_id} on licence {record.licence_id}")
    print(f"certificate  valid until {_when(record.certificate_expires_at)}")
    print(f"heartbeat    every {record.heartbeat_interval_s} s (`codec-engine heartbeat`)")
    print(f"state dir    {client.state.dir}")
    return 0


def cmd_heartbeat(args: argparse.Namespace) -> int:
    client = _client(args)
    record = client.heartbeat()
    if args.json:
        print(
            json.dumps(
                {
                    "activation_id": record.activation_id,
                    "licence_state": record.licence_state,
                    "certificate_expires_at": record.certificate_expires_at,
                    "revocation_serial": record.revocation_serial,
                }
            )
        )
        return 0
    print(
        f"heartbeat ok  licence {record.licence_state}; certificate renewed until "
        f"{_when(record.certificate_expires_at)}; revocation list #{record.revocation_serial}"
    )
    return 0


def print_status(report: StatusReport) -> None:
    print(f"activation   {report.activation_id} (control plane {report.server_url})")
    print(
        f"licence      {report.licence_id}: {report.licence_state or 'unknown'} "
        f"(last heartbeat {_when(report.last_heartbeat_at)})"
    )
    left = report.certificate_expires_at - report.now
    print(f"certificate  expires {_when(report.certificate_expires_at)} (in {_span(left)})")
    grace_left = report.grace_until - report.now
    print(f"grace        offline use until {_when(report.grace_until)} (in {_span(grace_left)})")
    print(f"entitlements {_entitlements(report.entitlements)}")
    verdict = "OK" if report.ok else "REFUSED"
    note = " - running on offline grace, heartbeat soon" if report.in_grace else ""
    print(f"status       {verdict} ({report.code}){note}")


def cmd_status(args: argparse.Namespace) -> int:
    report = _client(args).status(now=args.now)
    if args.json:
        print(json.dumps(report.as_dict()))
    else:
        print_status(report)
    if not report.ok:
        raise LicenceError(report.message, code=report.code)
    return 0


def cmd_deactivate(args: argparse.Namespace) -> int:
    activation_id = _client(args).deactivate()
    if args.json:
        print(json.dumps({"activation_id": activation_id, "state": "deactivated"}))
    else:
        print(f"deactivated  {activation_id}; this machine's seat is free")
    return 0
