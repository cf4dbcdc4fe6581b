"""Settings of ``clipsearch ui``; stdlib only so the CLI can build its parser without the ``ui`` extra."""

from __future__ import annotations

from dataclasses import dataclass

from clipsearch._options import OptionError, float_in, int_in, option, optional_text
from clipsearch.server.settings import ServerSettings, is_loopback

ENV_PREFIX = "CLIPSEARCH_UI_"


@dataclass(frozen=True)
class UISettings(ServerSettings):
    ENV_PREFIX = ENV_PREFIX

    port: int = option(8501, "port to bind (0: any free port)", parse=int_in(0, 65535))
    insecure: bool = option(
        False, "allow a non-loopback --host (the page has no TLS or login; put a proxy in front)", switch=True
    )
    encoder: str | None = option(
        None, "encoder address ($CLIPSEARCH_ENCODER or 127.0.0.1:50051)", parse=optional_text, env=False
    )
    index: str | None = option(
        None, "index address ($CLIPSEARCH_INDEX or 127.0.0.1:50052)", parse=optional_text, env=False
    )
    collection: str = option("demo", "collection to search")
    timeout_s: float = option(
        30.0, "seconds one search may take", parse=float_in(0.001, 3600), flag="--timeout"
    )
    max_upload_bytes: int = option(
        16 * 1024 * 1024, "largest query image accepted", parse=int_in(1, 2**31 - 1)
    )
    max_k: int = option(100, "largest k the page accepts", parse=int_in(1, 10_000))
    image_root: str | None = option(
        None,
        "folder that images stored as relative paths are under (the catalog's folder at ingest)",
        parse=optional_text,
    )
    grace_s: float = option(5.0, "seconds open requests get after SIGTERM", parse=float_in(0, 3600))

    def __post_init__(self) -> None:
        # The page has no TLS or login: the safe-bind rule's message must say so, not suggest flags it lacks.
        if not (is_loopback(self.host) or self.insecure):
            raise OptionError(
                f"--host: refusing to serve the page on {self.host}: it has no TLS or login of its own. "
                "Bind 127.0.0.1 behind a TLS-terminating proxy, or pass --insecure to accept the risk"
            )
        super().__post_init__()
