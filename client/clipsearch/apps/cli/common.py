"""What the commands share: service address flags, the extras guard, errors as one line."""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

from clipsearch.errors import ClipsearchError

#: What each extra brings that a command imports (checked before importing it).
EXTRAS = {
    "encoder": ("torch", "open_clip", "grpc_reflection", "prometheus_client"),
    "index": ("faiss", "grpc_reflection", "prometheus_client"),
    "gateway": ("grpc_reflection", "prometheus_client"),
    "ui": ("starlette", "uvicorn"),
    "ray": ("ray",),
    "plot": ("matplotlib",),
}


class MissingExtra(Exception):
    """A command needs packages of an extra that this install does not have."""


def require_extra(extra: str, command: str) -> None:
    """Raises :class:`MissingExtra` with the one sentence that names the extra to install."""
    missing = [module for module in EXTRAS[extra] if importlib.util.find_spec(module) is None]
    if missing:
        raise MissingExtra(
            f"`clipsearch {command}` needs the '{extra}' extra ({missing[0]} is not installed): "
            f"pip install 'clipsearch[{extra}]'"
        )


def add_addresses(parser: argparse.ArgumentParser, *, encoder: bool = True, index: bool = True) -> None:
    if encoder:
        parser.add_argument("--encoder", metavar="HOST:PORT", help="encoder address ($CLIPSEARCH_ENCODER)")
    if index:
        parser.add_argument("--index", metavar="HOST:PORT", help="index address ($CLIPSEARCH_INDEX)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per call (default 60)")


def run_handler(args: argparse.Namespace) -> int:
    """Runs the command; a user-facing failure is one line on stderr and an exit code."""
    try:
        return int(args.handler(args))
    except MissingExtra as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except ClipsearchError as error:
        where = f" ({error.field})" if error.field and error.field not in error.message else ""
        print(f"error: {error.code.name}: {error.message}{where}", file=sys.stderr)
        return 1
    except OSError as error:  # a file the user named: a catalog, an image, an output path
        target = f": {error.filename}" if error.filename else ""
        print(f"error: {error.strerror or error}{target}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def json_argument(text: str) -> object:
    """A flag's JSON value (``--filter '{"price": {"lt": 50}}'``), with the JSON error in one line."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(
            f"not JSON ({error.msg} at character {error.pos}): {text!r}"
        ) from None


def existing_file(text: str) -> Path:
    path = Path(text)
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"{text}: no such file")
    return path
