"""The ``clipsearch`` command.

Server subcommands import their service packages lazily, so the SDK-only
install (no torch, no faiss) can still run ``search``, ``ingest`` and ``health``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def _add_serve(subparsers: argparse._SubParsersAction) -> None:
    serve = subparsers.add_parser("serve", help="run a server")
    which = serve.add_subparsers(dest="service", required=True)
    encoder = which.add_parser("encoder", help="the CLIP encoder service")
    index = which.add_parser("index", help="the FAISS index service")
    # Each service owns its flags; importing its settings needs only the stdlib.
    from encoder_service.settings import EncoderSettings
    from index_service.settings import IndexSettings

    EncoderSettings.add_arguments(encoder)
    IndexSettings.add_arguments(index)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="clipsearch", description="Multimodal product search over gRPC.")
    subparsers = parser.add_subparsers(dest="command", required=True)
    _add_serve(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        if args.service == "encoder":
            from encoder_service.server import run
            from encoder_service.settings import EncoderSettings

            return run(EncoderSettings.from_args(args))
        from index_service.server import run as run_index
        from index_service.settings import IndexSettings

        return run_index(IndexSettings.from_args(args))
    return 2


if __name__ == "__main__":
    sys.exit(main())
