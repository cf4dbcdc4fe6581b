"""``python -m index_service [flags]``: the same server as ``clipsearch serve index``."""

from __future__ import annotations

import argparse
import sys

from index_service.settings import IndexSettings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m index_service", description="The clipsearch index service."
    )
    IndexSettings.add_arguments(parser)
    settings = IndexSettings.from_args(parser.parse_args(argv))
    from index_service.server import run

    return run(settings)


if __name__ == "__main__":
    sys.exit(main())
