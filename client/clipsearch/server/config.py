"""Server settings from flags, each also settable by an environment variable.

Standard library only: the ``clipsearch`` CLI builds every server's parser before
torch, faiss or grpc is imported. ``--max-batch-size`` of the encoder is also
``CLIPSEARCH_ENCODER_MAX_BATCH_SIZE``; a value from the environment is parsed like
the flag, so a bad one fails at start with a message naming both.

:class:`OperationsSettings` holds what every server shares (TLS, tokens, the
safe-bind override, metrics and logging); each server's settings inherit it.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class SettingsError(ValueError):
    """A bad setting; the message starts with the flag's name."""


def check(ok: bool, flag: str, problem: str) -> None:
    if not ok:
        raise SettingsError(f"{flag}: {problem}")


class EnvFlags:
    """Adds flags whose defaults come from ``<prefix><FLAG>`` environment variables."""

    def __init__(self, parser: argparse.ArgumentParser, prefix: str):
        self.parser = parser
        self.prefix = prefix

    def env_var(self, flag: str) -> str:
        return self.prefix + flag.lstrip("-").replace("-", "_").upper()

    def __call__(
        self, flag: str, parse: Callable[[str], Any], default: Any, help_: str, *, switch: bool = False
    ) -> None:
        env = self.env_var(flag)
        raw = os.environ.get(env)
        if raw is not None and switch:
            try:
                default = env_bool(raw)
            except argparse.ArgumentTypeError as exc:
                self.parser.error(f"{flag} (from ${env}={raw!r}): {exc}")
        elif raw is not None:
            # Parsed by argparse only when this command runs without the flag: a bad value must
            # not break other commands (Kubernetes service links set CLIPSEARCH_ENCODER_PORT=
            # tcp://10.0.0.5:50051 in every pod, which is no port but is overridden by --port).
            default, parse = raw, _naming_env(parse, raw, env)
        text = f"{help_} (default {default}; env {env})"
        if switch:
            self.parser.add_argument(flag, action="store_true", default=default, help=text)
        else:
            self.parser.add_argument(flag, type=parse, default=default, help=text)


def _naming_env(parse: Callable[[str], Any], raw: str, env: str) -> Callable[[str], Any]:
    """``parse``, whose error names the variable when it is parsing the variable's value."""

    def parse_naming_env(text: str) -> Any:
        try:
            return parse(text)
        except (ValueError, argparse.ArgumentTypeError) as exc:
            if text is raw:
                raise argparse.ArgumentTypeError(f"{exc} (from ${env}={raw!r})") from None
            raise

    parse_naming_env.__name__ = getattr(parse, "__name__", "value")
    return parse_naming_env


def env_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise argparse.ArgumentTypeError(f"expected a boolean (1/0, true/false), got {text!r}")


def choice(choices: tuple[str, ...]) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in choices:
            raise argparse.ArgumentTypeError(f"expected one of {', '.join(choices)}, got {text!r}")
        return text

    parse.__name__ = "choice"
    return parse


def int_in(low: int, high: int) -> Callable[[str], int]:
    return _number_in(int, "an integer", low, high)


def float_in(low: float, high: float) -> Callable[[str], float]:
    return _number_in(float, "a number", low, high)


def _number_in(cast: Callable[[str], Any], what: str, low: float, high: float) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be in [{low}, {high}], got {value}")
        return value

    parse.__name__ = what.split()[-1]
    return parse


def optional_path(text: str) -> str | None:
    return text or None


LOG_FORMATS = ("text", "json")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


@dataclass(frozen=True)
class OperationsSettings:
    """TLS, tokens, bind safety, metrics and logging: the same flags on every server."""

    #: PEM server certificate; with ``tls_key`` turns TLS on.
    tls_cert: str | None = None
    tls_key: str | None = None
    #: PEM CA bundle: clients must present a certificate it signed (mutual TLS).
    tls_client_ca: str | None = None
    #: Lines ``<read|write> <token>``; calls then need ``authorization: Bearer <token>``.
    token_file: str | None = None
    #: Allow a non-loopback bind without TLS and tokens.
    insecure: bool = False
    #: Prometheus /metrics port; 0 turns it off.
    metrics_port: int = 0
    log_format: str = "text"
    log_level: str = "INFO"

    def __post_init__(self) -> None:
        check(bool(self.tls_cert) == bool(self.tls_key), "--tls-cert", "--tls-cert and --tls-key go together")
        check(
            not self.tls_client_ca or bool(self.tls_cert), "--tls-client-ca", "needs --tls-cert and --tls-key"
        )
        for flag, path in (
            ("--tls-cert", self.tls_cert),
            ("--tls-key", self.tls_key),
            ("--tls-client-ca", self.tls_client_ca),
            ("--token-file", self.token_file),
        ):
            check(not path or Path(path).is_file(), flag, f"{path}: no such file")
        check(
            0 <= self.metrics_port <= 65535,
            "--metrics-port",
            f"must be in [0, 65535], got {self.metrics_port}",
        )
        check(self.log_format in LOG_FORMATS, "--log-format", f"expected one of {LOG_FORMATS}")
        check(self.log_level in LOG_LEVELS, "--log-level", f"expected one of {LOG_LEVELS}")

    @staticmethod
    def add_operations_arguments(add: EnvFlags) -> None:
        add("--tls-cert", optional_path, None, "PEM server certificate; with --tls-key turns TLS on")
        add("--tls-key", optional_path, None, "PEM private key of --tls-cert")
        add(
            "--tls-client-ca",
            optional_path,
            None,
            "PEM CA; clients must present a cert it signed (mutual TLS)",
        )
        add(
            "--token-file",
            optional_path,
            None,
            "lines '<read|write> <token>'; calls then need a bearer token",
        )
        add("--insecure", env_bool, False, "allow a non-loopback --host without TLS and tokens", switch=True)
        add("--metrics-port", int_in(0, 65535), 0, "Prometheus /metrics port (0: off)")
        add("--log-format", choice(LOG_FORMATS), "text", "log lines as text or one JSON object per line")
        add("--log-level", choice(LOG_LEVELS), "INFO", "log level")

    def server_options(self) -> dict[str, Any]:
        """Keyword arguments for :class:`~clipsearch.server.server.ServerOptions`."""
        from clipsearch.server.security import TlsFiles, TokenScopes

        tls = None
        if self.tls_cert and self.tls_key:
            client_ca = Path(self.tls_client_ca) if self.tls_client_ca else None
            tls = TlsFiles(Path(self.tls_cert), Path(self.tls_key), client_ca)
        tokens = TokenScopes.from_file(Path(self.token_file)) if self.token_file else None
        return {"tls": tls, "tokens": tokens, "insecure": self.insecure, "metrics_port": self.metrics_port}


def settings_from_args(cls: type, ns: argparse.Namespace) -> Any:
    """``cls(**flags)`` for a settings dataclass; a bad value exits with the flag's name."""
    from dataclasses import fields

    try:
        return cls(**{f.name: getattr(ns, f.name) for f in fields(cls) if hasattr(ns, f.name)})
    except SettingsError as exc:
        raise SystemExit(f"error: {exc}") from None
