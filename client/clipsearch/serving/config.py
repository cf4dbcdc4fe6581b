"""Command-line flags that can also be set by environment variables.

``--max-message-bytes`` of the gateway is ``CLIPSEARCH_GATEWAY_MAX_MESSAGE_BYTES``.
A value from the environment goes through the same argparse ``type`` as the flag,
so a bad one fails at start with a message naming the flag.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path
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


def add_operations_flags(parser: argparse.ArgumentParser, prefix: str) -> None:
    """The TLS, token, bind-safety, metrics and logging flags every server shares."""
    add_flag(parser, prefix, "--tls-cert", help="PEM server certificate; with --tls-key turns TLS on")
    add_flag(parser, prefix, "--tls-key", help="PEM private key of --tls-cert")
    add_flag(
        parser, prefix, "--tls-client-ca", help="PEM CA bundle; clients must present a cert it signed (mTLS)"
    )
    add_flag(
        parser, prefix, "--token-file", help="lines '<read|write> <token>'; calls then need a bearer token"
    )
    add_flag(
        parser,
        prefix,
        "--insecure",
        action="store_true",
        help="allow a non-loopback --host without TLS and tokens",
    )
    add_flag(
        parser,
        prefix,
        "--metrics-port",
        type=port_number,
        default=0,
        help="Prometheus /metrics port, 0 = off",
    )
    add_flag(parser, prefix, "--log-format", choices=("text", "json"), default="text", help="log line format")
    add_flag(
        parser,
        prefix,
        "--log-level",
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        default="INFO",
        help="log level",
    )


@dataclass(frozen=True)
class OperationsSettings:
    """What :func:`add_operations_flags` parses; :meth:`server_options` feeds ServerOptions."""

    tls_cert: str | None = None
    tls_key: str | None = None
    tls_client_ca: str | None = None
    token_file: str | None = None
    insecure: bool = False
    metrics_port: int = 0
    log_format: str = "text"
    log_level: str = "INFO"

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> OperationsSettings:
        settings = cls(
            tls_cert=args.tls_cert,
            tls_key=args.tls_key,
            tls_client_ca=args.tls_client_ca,
            token_file=args.token_file,
            insecure=args.insecure,
            metrics_port=args.metrics_port,
            log_format=args.log_format,
            log_level=args.log_level,
        )
        settings.validate()
        return settings

    def validate(self) -> None:
        if bool(self.tls_cert) != bool(self.tls_key):
            raise SystemExit("error: --tls-cert and --tls-key go together")
        if self.tls_client_ca and not self.tls_cert:
            raise SystemExit("error: --tls-client-ca needs --tls-cert and --tls-key")
        for flag, path in (
            ("--tls-cert", self.tls_cert),
            ("--tls-key", self.tls_key),
            ("--tls-client-ca", self.tls_client_ca),
            ("--token-file", self.token_file),
        ):
            if path and not Path(path).is_file():
                raise SystemExit(f"error: {flag} {path}: no such file")

    def server_options(self) -> dict[str, Any]:
        """Keyword arguments for :class:`~clipsearch.serving.server.ServerOptions`."""
        from clipsearch.serving.security import TlsFiles, TokenScopes

        tls = None
        if self.tls_cert and self.tls_key:
            tls = TlsFiles(
                Path(self.tls_cert),
                Path(self.tls_key),
                Path(self.tls_client_ca) if self.tls_client_ca else None,
            )
        tokens = TokenScopes.from_file(Path(self.token_file)) if self.token_file else None
        return {"tls": tls, "tokens": tokens, "insecure": self.insecure, "metrics_port": self.metrics_port}
