"""The encoder on Ray Serve: a replica class around :class:`~encoder_service.core.EncoderCore`.

:class:`EncoderReplica` is what a Serve deployment runs (one replica per GPU when the
cluster has them, autoscaled on ongoing requests: see client/clipsearch/cluster/app.py).
:class:`RemoteEncoderCore` stands in for the core inside the gRPC ingress, so the
standalone :class:`~encoder_service.servicer.EncoderServicer` serves the cluster unchanged.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from clipsearch.errors import ClipsearchError
from clipsearch.types import ModelInfo
from encoder_service.core import Input
from encoder_service.settings import EncoderSettings


class EncoderReplica:
    """Loads the model once per replica; every call is one core call."""

    def __init__(self, settings: EncoderSettings):
        from encoder_service.factory import core_from_settings

        self.core = core_from_settings(settings)
        self._started: asyncio.Task | None = None

    async def _ready(self) -> None:
        if self._started is None:
            self._started = asyncio.ensure_future(self.core.start())
        await self._started

    async def identity(self) -> ModelInfo:
        return self.core.identity

    async def embed(self, inputs: Sequence[Input], remaining_s: float | None) -> np.ndarray | ClipsearchError:
        """Domain errors are returned, not raised: they cross the process boundary whole."""
        await self._ready()
        try:
            return await self.core.embed(inputs, deadline=_deadline(remaining_s))
        except ClipsearchError as error:
            return error

    async def embed_each(
        self, inputs: Sequence[Input], remaining_s: float | None
    ) -> list[np.ndarray | ClipsearchError] | ClipsearchError:
        await self._ready()
        try:
            return await self.core.embed_each(inputs, deadline=_deadline(remaining_s))
        except ClipsearchError as error:
            return error

    def __del__(self) -> None:
        core = getattr(self, "core", None)
        if core is not None:
            core.close()


class RemoteEncoderCore:
    """The part of EncoderCore's interface the servicer uses, over a Serve deployment handle.

    Deadlines travel as seconds left (clocks of two machines are not comparable).
    """

    def __init__(self, handle: Any):
        self._handle = handle
        self._identity: ModelInfo | None = None

    async def load(self) -> None:
        if self._identity is None:
            self._identity = await self._handle.identity.remote()

    @property
    def identity(self) -> ModelInfo:
        assert self._identity is not None, "call load() first"
        return self._identity

    async def embed(self, inputs: Sequence[Input], *, deadline: float | None = None) -> np.ndarray:
        return _raised(await self._handle.embed.remote(list(inputs), _remaining(deadline)))

    async def embed_each(
        self, inputs: Sequence[Input], *, deadline: float | None = None
    ) -> list[np.ndarray | ClipsearchError]:
        return _raised(await self._handle.embed_each.remote(list(inputs), _remaining(deadline)))


def _raised(answer: Any) -> Any:
    if isinstance(answer, ClipsearchError):
        raise answer
    return answer


def _remaining(deadline: float | None) -> float | None:
    return None if deadline is None else deadline - time.monotonic()


def _deadline(remaining_s: float | None) -> float | None:
    return None if remaining_s is None else time.monotonic() + remaining_s
