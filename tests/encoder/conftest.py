"""The encoder on loopback for the tests of this folder.

``encoder_address`` is one session-wide server with the tiny ``clipsearch-tiny`` config
and (deliberately, explicitly) random weights. Tests that need their own settings or a
model they can hold still use ``start_encoder`` and :class:`ModelGate`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import grpc
import pytest
from harness import ServerThread

from clipsearch.v1 import encoder_pb2_grpc

TINY = {"model": "clipsearch-tiny", "pretrained": "random", "port": 0}


@pytest.fixture(scope="session")
def encoder_thread() -> Iterator[ServerThread]:
    from encoder_service.server import create_server
    from encoder_service.settings import EncoderSettings

    settings = EncoderSettings(**TINY, max_wait_ms=20, decode_workers=2)
    with ServerThread(lambda: create_server(settings), name="encoder-tests") as thread:
        yield thread


@pytest.fixture(scope="session")
def encoder_address(encoder_thread: ServerThread) -> str:
    return encoder_thread.address


@pytest.fixture(scope="session")
def channel(encoder_address: str) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(encoder_address) as ch:
        yield ch


@pytest.fixture(scope="session")
def stub(channel: grpc.Channel) -> encoder_pb2_grpc.EncoderServiceStub:
    return encoder_pb2_grpc.EncoderServiceStub(channel)


@pytest.fixture(scope="session")
def reference_model():
    """The same tiny random model, in process (random weights are seeded, so they are equal)."""
    from encoder_service.model import load_model

    return load_model("clipsearch-tiny", "random")


@pytest.fixture
def start_encoder() -> Iterator[Callable[..., ServerThread]]:
    """start_encoder(**settings) -> a running ServerThread of clipsearch-tiny, stopped after the test."""
    from encoder_service.server import create_server
    from encoder_service.settings import EncoderSettings

    threads: list[ServerThread] = []

    def start(**overrides) -> ServerThread:
        settings = EncoderSettings(**{**TINY, **overrides})
        thread = ServerThread(lambda: create_server(settings), name="encoder-test").start()
        threads.append(thread)
        return thread

    yield start
    for thread in threads:
        thread.stop(grace_s=0.5)


class ModelGate:
    """Holds the model thread of a server inside its next batch until :meth:`open`.

    With the model held, callers queue up deterministically: what batches form, what the
    queue refuses and what expires no longer depends on timing.
    """

    def __init__(self, thread: ServerThread):
        self.model = thread.server.core.model
        self.entered = threading.Event()
        self._open = threading.Event()
        self.batches: list[tuple[str, int]] = []
        self._originals = {"image": self.model.encode_images, "text": self.model.encode_texts}
        self.model.encode_images = self._wrap("image")
        self.model.encode_texts = self._wrap("text")

    def _wrap(self, kind: str):
        original = self._originals[kind]

        def encode(rows):
            self.batches.append((kind, len(rows)))
            self.entered.set()
            if not self._open.wait(timeout=60):
                raise RuntimeError("gate never opened")
            return original(rows)

        return encode

    def open(self) -> None:
        self._open.set()


@pytest.fixture
def gate_of() -> Callable[[ServerThread], ModelGate]:
    gates: list[ModelGate] = []

    def make(thread: ServerThread) -> ModelGate:
        gate = ModelGate(thread)
        gates.append(gate)
        return gate

    yield make
    for gate in gates:
        gate.open()
