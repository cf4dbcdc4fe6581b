"""Fixtures of the index suite: a core engine on a temp dir, and real servers on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import grpc
import pytest
from harness import ServerThread

from clipsearch.v1 import index_pb2_grpc
from index_service.collection import CollectionOptions
from index_service.engine import Engine, EngineOptions
from index_service.server import create_server
from index_service.settings import IndexSettings


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "index"


@pytest.fixture
def open_engine(data_dir: Path) -> Iterator:
    """Opens engines on ``data_dir`` (upkeep driven by hand); closes whatever is left open."""
    opened: list[Engine] = []

    def open_(**collection_options: object) -> Engine:
        options = EngineOptions(
            data_dir, background=False, collection=CollectionOptions(**collection_options)
        )
        engine = Engine(options)
        opened.append(engine)
        return engine

    yield open_
    for engine in opened:
        try:
            engine.close(snapshot=False)
        except ValueError:
            pass  # already closed by the test


@pytest.fixture
def engine(open_engine) -> Engine:
    return open_engine()


class RunningServer:
    """A real index server on a loopback port, with a stub; ``restart()`` reopens the same data."""

    def __init__(self, settings: IndexSettings):
        self.settings = settings
        self.thread: ServerThread | None = None
        self.channel: grpc.Channel | None = None
        self.stub: index_pb2_grpc.IndexServiceStub | None = None

    def start(self) -> RunningServer:
        self.thread = ServerThread(lambda: create_server(self.settings), name="index-server").start()
        self.channel = grpc.insecure_channel(self.address)
        self.stub = index_pb2_grpc.IndexServiceStub(self.channel)
        return self

    @property
    def address(self) -> str:
        assert self.thread is not None
        return self.thread.address

    def stop(self) -> None:
        if self.channel is not None:
            self.channel.close()
        if self.thread is not None:
            self.thread.stop()
        self.thread = self.channel = self.stub = None

    def restart(self) -> RunningServer:
        self.stop()
        return self.start()


@pytest.fixture
def server(data_dir: Path) -> Iterator[RunningServer]:
    settings = IndexSettings(port=0, data_dir=data_dir, search_threads=4, grace_s=1.0)
    running = RunningServer(settings).start()
    yield running
    running.stop()


@pytest.fixture
def server_with(data_dir: Path) -> Iterator:
    """A server with some settings changed: ``server_with(snapshot_interval_s=...)``."""
    started: list[RunningServer] = []

    def start(**changes: object) -> RunningServer:
        settings = replace(IndexSettings(port=0, data_dir=data_dir, grace_s=1.0), **changes)
        running = RunningServer(settings).start()
        started.append(running)
        return running

    yield start
    for running in started:
        running.stop()
