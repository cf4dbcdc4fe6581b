"""The encoder on loopback for the tests of this folder.

``encoder_address`` is one session-wide server with the tiny ``clipsearch-tiny`` config
and (deliberately, explicitly) random weights. Tests that need their own settings or a
model they can hold still use ``start_encoder`` and :class:`ModelGate`. ``checkpoints`` saves
two clipsearch-tiny checkpoints (weights from seeds 1 and 2) for the model and service tests.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from encoder_rpc import TINY, ModelGate
from harness import ServerThread

from clipsearch.v1 import encoder_pb2_grpc


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


def save_checkpoint(path: Path, seed: int) -> Path:
    """A clipsearch-tiny state dict with weights drawn from ``seed``, as training would save it."""
    import open_clip
    import torch

    import encoder_service.model  # noqa: F401  (importing it registers the clipsearch-* configs)

    torch.manual_seed(seed)
    model, _, _ = open_clip.create_model_and_transforms("clipsearch-tiny")
    torch.save(model.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("checkpoints")
    return save_checkpoint(folder / "tiny-a.pt", 1), save_checkpoint(folder / "tiny-b.pt", 2)
