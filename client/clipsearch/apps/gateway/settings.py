"""Settings of ``clipsearch serve gateway``; stdlib only so the CLI can import it cheaply."""

from __future__ import annotations

from dataclasses import dataclass

from clipsearch._options import int_in, option, optional_text
from clipsearch.server.settings import GrpcServerSettings

ENV_PREFIX = "CLIPSEARCH_GATEWAY_"


@dataclass(frozen=True)
class GatewaySettings(GrpcServerSettings):
    ENV_PREFIX = ENV_PREFIX

    port: int = option(50053, "port to bind (0: any free port)", parse=int_in(0, 65535))
    encoder: str | None = option(
        None, "encoder address ($CLIPSEARCH_ENCODER or 127.0.0.1:50051)", parse=optional_text, env=False
    )
    index: str | None = option(
        None, "index address ($CLIPSEARCH_INDEX or 127.0.0.1:50052)", parse=optional_text, env=False
    )
