"""`python -m codec_engine.sdk ...`: the SDK commands alone (no codec commands, no torch)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from codec_engine.errors import EngineError
from codec_engine.sdk import commands


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="codec-engine", description="Codec SDK client.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.register(subparsers)
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except EngineError as exc:
        print(f"codec-engine {args.command}: error [{exc.code}]: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
