"""`codec-engine` console script.

Sub-commands are registered by the module that owns them, so that the codec commands
(encode, decode, compare) and the SDK commands (activate, status, deactivate, ...) each
live beside their code. Every command exits non-zero with one readable line on bad input.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from codec_engine import commands as codec_commands
from codec_engine.errors import EngineError
from codec_engine.sdk import commands as sdk_commands
from codec_engine.sdk.usage import register_usage_commands


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="codec-engine", description="Neural codec engine and SDK client."
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    codec_commands.register(subparsers)
    sdk_commands.register(subparsers)
    register_usage_commands(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except EngineError as exc:
        print(f"codec-engine {args.command}: error [{exc.code}]: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("codec-engine: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
