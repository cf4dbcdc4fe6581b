"""The ``clipsearch`` command: one module per command, each with ``add(commands)``.

Building the parser needs the standard library only: a base install (the SDK, no server
extras) runs ``--help`` of every command, and a command that needs an extra says which one
in a sentence (:func:`~clipsearch.apps.cli.common.require_extra`) before importing it.
Service addresses default to ``$CLIPSEARCH_ENCODER`` / ``$CLIPSEARCH_INDEX``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from clipsearch.apps.cli import (
    aliases,
    backup,
    bulk_ingest,
    cluster,
    collections,
    demo,
    health,
    ingest,
    items,
    loadtest,
    search,
    serve,
    ui,
)
from clipsearch.apps.cli.common import run_handler

COMMANDS = (
    serve,
    ingest,
    search,
    items,
    collections,
    aliases,
    backup,
    health,
    loadtest,
    demo,
    cluster,
    bulk_ingest,
    ui,
)


def build_parser() -> argparse.ArgumentParser:
    from clipsearch import __version__

    parser = argparse.ArgumentParser(prog="clipsearch", description="Multimodal product search over gRPC.")
    parser.add_argument("--version", action="version", version=f"clipsearch {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_handler(args)


if __name__ == "__main__":
    sys.exit(main())
