"""Prints (or --check's) the flag/environment table of docs/operations.md from the real parsers.

python scripts/flag_table.py            # rewrite the table between the markers
python scripts/flag_table.py --check    # exit 1 if docs/operations.md is stale (a test runs this)
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "operations.md"
BEGIN, END = "<!-- flag-table:begin -->", "<!-- flag-table:end -->"


def parsers() -> dict[str, argparse.ArgumentParser]:
    from clipsearch.apps.gateway.settings import GatewaySettings
    from encoder_service.settings import EncoderSettings
    from index_service.settings import IndexSettings

    result = {}
    for command, settings in (
        ("serve encoder", EncoderSettings),
        ("serve index", IndexSettings),
        ("serve gateway", GatewaySettings),
    ):
        parser = argparse.ArgumentParser(prog=f"clipsearch {command}")
        settings.add_arguments(parser)
        result[command] = parser
    try:
        from clipsearch.apps.ui.settings import UISettings
    except ImportError:
        return result
    parser = argparse.ArgumentParser(prog="clipsearch ui")
    UISettings.add_arguments(parser)
    result["ui"] = parser
    return result


def table() -> str:
    lines = ["| command | flag | environment variable | default | meaning |", "|---|---|---|---|---|"]
    for command, parser in parsers().items():
        for action in parser._actions:
            if not action.option_strings or action.dest == "help":
                continue
            help_text = (action.help or "").replace("|", "\\|")
            env = ""
            if "; env " in help_text:  # "<help> (default <d>; env <VAR>)" from EnvFlags
                help_text, _, env = help_text.rpartition(" (default ")
                env = f"`{env.rpartition('; env ')[2].rstrip(')')}`"
            default = action.default
            if isinstance(default, bool) or default is None:
                default = "" if default in (None, False) else "on"
            flag = ", ".join(f"`{o}`" for o in action.option_strings)
            lines.append(f"| `{command}` | {flag} | {env} | {default} | {help_text.strip()} |")
    return "\n".join(lines)


def _without_defaults(markdown: str) -> list[list[str]]:
    """Rows without the default column: some defaults follow the machine's core count."""
    rows = []
    for line in markdown.splitlines():
        if line.startswith("| `"):
            cells = line.split(" | ")
            rows.append(cells[:3] + cells[4:])
    return rows


def main() -> int:
    for name in [n for n in os.environ if n.startswith("CLIPSEARCH_")]:
        del os.environ[name]  # document the built-in defaults, not this shell's
    check = "--check" in sys.argv[1:]
    text = DOC.read_text()
    head, _, rest = text.partition(BEGIN)
    current, _, tail = rest.partition(END)
    updated = f"{head}{BEGIN}\n{table()}\n{END}{tail}"
    if check:
        if _without_defaults(current) != _without_defaults(table()):
            print("docs/operations.md flag table is stale: run python scripts/flag_table.py", file=sys.stderr)
            return 1
        return 0
    DOC.write_text(updated)
    return 0


if __name__ == "__main__":
    sys.exit(main())
