"""``python -m encoder_service [flags]``: the same server as ``clipsearch serve encoder``."""

from __future__ import annotations

import argparse
import sys

from encoder_service.settings import EncoderSettings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m encoder_service", description="The clipsearch encoder service."
    )
    EncoderSettings.add_arguments(parser)
    settings = EncoderSettings.from_args(parser.parse_args(argv))
    from encoder_service.server import run

    return run(settings)


if __name__ == "__main__":
    sys.exit(main())
