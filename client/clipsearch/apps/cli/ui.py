"""``clipsearch ui``: the search page (the ``ui`` extra)."""

from __future__ import annotations

import argparse

from clipsearch.apps.cli.common import require_extra
from clipsearch.apps.ui.settings import UISettings


def add(commands: argparse._SubParsersAction) -> None:
    ui = commands.add_parser("ui", help="serve the visual search page (needs clipsearch[ui])")
    UISettings.add_arguments(ui)
    ui.set_defaults(handler=_ui)


def _ui(args: argparse.Namespace) -> int:
    require_extra("ui", "ui")
    from clipsearch.apps.ui.server import run

    return run(UISettings.from_args(args))
