"""The settings every clipsearch server takes, declared once (see :mod:`clipsearch._options`).

:class:`ServerSettings` is what every server has, the search page included: where to listen,
how to log, the safe-bind override. :class:`GrpcServerSettings` adds what every gRPC server
has: TLS, tokens, metrics, message and concurrency limits, reflection, the drain period.
Each server's settings subclass one of them and add their own fields. Standard library only.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

from clipsearch._options import OptionError, Options, choice, float_in, int_in, option, optional_text
from clipsearch.server.logs import LOG_FORMATS, LOG_LEVELS

__all__ = ["GrpcServerSettings", "OptionError", "ServerSettings"]


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind_is_safe(host: str, *, tls: bool, auth: bool, insecure: bool) -> None:
    """Refuses a non-loopback bind without TLS and tokens, unless explicitly ``insecure``."""
    if is_loopback(host) or insecure or (tls and auth):
        return
    missing = " and ".join(name for name, ok in (("TLS", tls), ("token auth", auth)) if not ok)
    raise OptionError(
        f"--host: refusing to listen on {host} without {missing}: anyone who can reach it could read or "
        "change the data. Configure --tls-cert/--tls-key and --token-file, or pass --insecure to accept "
        "the risk"
    )


@dataclass(frozen=True)
class ServerSettings(Options):
    host: str = option("127.0.0.1", "address to bind")
    port: int = option(0, "port to bind (0: any free port)", parse=int_in(0, 65535))
    log_format: str = option(
        "text", "log lines as text or one JSON object per line", parse=choice(LOG_FORMATS)
    )
    log_level: str = option("INFO", "log level", parse=choice(LOG_LEVELS))
    insecure: bool = option(False, "allow a non-loopback --host without TLS and tokens", switch=True)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_bind_is_safe(self.host, tls=self.serves_tls, auth=self.checks_tokens, insecure=self.insecure)

    @property
    def serves_tls(self) -> bool:
        return False

    @property
    def checks_tokens(self) -> bool:
        return False


@dataclass(frozen=True)
class GrpcServerSettings(ServerSettings):
    tls_cert: str | None = option(
        None, "PEM server certificate; with --tls-key turns TLS on", parse=optional_text
    )
    tls_key: str | None = option(None, "PEM private key of --tls-cert", parse=optional_text)
    tls_client_ca: str | None = option(
        None, "PEM CA; clients must present a cert it signed (mutual TLS)", parse=optional_text
    )
    token_file: str | None = option(
        None, "lines '<read|write> <token>'; calls then need a bearer token", parse=optional_text
    )
    metrics_port: int = option(0, "Prometheus /metrics port (0: off)", parse=int_in(0, 65535))
    max_message_bytes: int = option(64 * 1024 * 1024, "largest gRPC message", parse=int_in(1024, 2**31 - 1))
    max_concurrent_rpcs: int = option(
        256, "calls in flight at most (beyond: RESOURCE_EXHAUSTED)", parse=int_in(1, 100_000)
    )
    no_reflection: bool = option(False, "turn gRPC server reflection off", switch=True)
    grace_s: float = option(10.0, "seconds in-flight calls get after SIGTERM", parse=float_in(0, 3600))
    access_log: str = option(
        "all",
        "a log line per call (all), or only per call that did not end OK (errors); metrics count all",
        parse=choice(("all", "errors")),
    )

    @property
    def serves_tls(self) -> bool:
        return bool(self.tls_cert and self.tls_key)

    @property
    def checks_tokens(self) -> bool:
        return bool(self.token_file)

    def __post_init__(self) -> None:
        if bool(self.tls_cert) != bool(self.tls_key):
            raise OptionError("--tls-cert: --tls-cert and --tls-key go together")
        if self.tls_client_ca and not self.tls_cert:
            raise OptionError("--tls-client-ca: needs --tls-cert and --tls-key")
        for name in ("tls_cert", "tls_key", "tls_client_ca", "token_file"):
            path = getattr(self, name)
            if path and not Path(path).is_file():
                raise OptionError(f"{self.flag_of(name)}: {path}: no such file")
        super().__post_init__()
