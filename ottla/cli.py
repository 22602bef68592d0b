"""The `ottla` command line: `ottla serve`, `ottla --version`.

The broker itself lands with the broker issue; until then `serve` says so and
exits non-zero, so nobody mistakes it for a running broker.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ottla import __version__


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every `ottla` subcommand."""
    parser = argparse.ArgumentParser(
        prog="ottla", description="A Kafka-compatible event-streaming broker."
    )
    parser.add_argument("--version", action="version", version=f"ottla {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser("serve", help="run a broker")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit code."""
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        print("ottla serve: the broker lands with the broker issue (#4).", file=sys.stderr)
        return 2
    build_parser().print_help()
    return 0
