"""Command-line flags that can also be set by environment variables.

``--max-message-bytes`` of the gateway is ``CLIPSEARCH_GATEWAY_MAX_MESSAGE_BYTES``.
A value from the environment goes through the same argparse ``type`` as the flag,
so a bad one fails at start with a message naming the flag.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_var(prefix: str, flag: str) -> str:
    return f"{prefix}_{flag.lstrip('-').replace('-', '_').upper()}"


def add_flag(parser: argparse.ArgumentParser, prefix: str, flag: str, **kwargs: Any) -> argparse.Action:
    """``parser.add_argument(flag, ...)`` whose default comes from ``$PREFIX_FLAG`` when set."""
    name = env_var(prefix, flag)
    value = os.environ.get(name)
    is_switch = kwargs.get("action") in ("store_true", "store_false")
    if value is not None:
        if is_switch:
            lowered = value.strip().lower()
            if lowered not in _TRUE | _FALSE:
                parser.error(f"{name}={value!r}: expected one of {sorted(_TRUE | _FALSE)}")
            set_value = kwargs["action"] == "store_true"
            kwargs["default"] = set_value if lowered in _TRUE else not set_value
        else:
            kwargs["default"] = value  # parsed by `type`, errors name the flag
    kwargs["help"] = f"{kwargs.get('help', '')} [env {name}]".strip()
    return parser.add_argument(flag, **kwargs)


def positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def port_number(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port number 0-65535, got {text}")
    return value
