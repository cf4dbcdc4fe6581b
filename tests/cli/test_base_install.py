"""The base install (``pip install clipsearch``, no extras) in a fresh virtualenv, as a user gets it.

It must run ``clipsearch --help`` and every command's ``--help``, search through the SDK and
``clipsearch.aio`` against running servers, and answer every command that needs an extra
with one sentence naming it (exit 2) instead of a traceback.
"""

from __future__ import annotations

import os
import subprocess
import textwrap
import venv
from pathlib import Path

import pytest
from harness import ServerThread

pytestmark = [pytest.mark.functional, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
#: Commands and the extra each needs; each is run with arguments that get past argparse.
NEEDS_EXTRA = [
    (["serve", "encoder"], "encoder"),
    (["serve", "index"], "index"),
    (["serve", "gateway"], "gateway"),
    (["ui"], "ui"),
    (["cluster", "up"], "ray"),
    (["bulk-ingest", "catalog.csv", "--collection", "c"], "ray"),
    (["loadtest", "--collection", "c", "--plot", "out.png"], "plot"),
]


@pytest.fixture(scope="module")
def base_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtualenv with ``pip install <this checkout>``: the SDK's dependencies only."""
    home = tmp_path_factory.mktemp("base-install") / "venv"
    venv.create(home, with_pip=True)
    python = home / "bin" / "python"
    done = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(ROOT)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return home


def _run(home: Path, *args: str, **kwargs) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run(
        [str(home / "bin" / args[0]), *args[1:]],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        **kwargs,
    )


def test_the_base_install_has_no_server_extra(base_venv: Path) -> None:
    extras = ("torch", "faiss", "ray", "starlette")
    code = f"import importlib.util as u; print([m for m in {extras!r} if u.find_spec(m)])"
    assert _run(base_venv, "python", "-c", code).stdout.strip() == "[]"


def test_help_of_every_command(base_venv: Path) -> None:
    top = _run(base_venv, "clipsearch", "--help")
    assert top.returncode == 0 and "search" in top.stdout, top.stderr
    assert _run(base_venv, "clipsearch", "--version").stdout.startswith("clipsearch ")
    commands = [
        ["serve", "encoder"], ["serve", "index"], ["serve", "gateway"], ["ingest"], ["search"],
        ["collections", "list"], ["health"], ["loadtest"], ["demo-catalog"], ["cluster", "up"],
        ["bulk-ingest"], ["ui"],
    ]  # fmt: skip
    for command in commands:
        done = _run(base_venv, "clipsearch", *command, "--help")
        assert done.returncode == 0, (command, done.stderr)
        assert "usage: clipsearch" in done.stdout and "Traceback" not in done.stderr, command


@pytest.mark.parametrize(
    ("command", "extra"), NEEDS_EXTRA, ids=lambda v: v if isinstance(v, str) else " ".join(v)
)
def test_commands_that_need_an_extra_say_which(base_venv: Path, tmp_path: Path, command, extra) -> None:
    done = _run(base_venv, "clipsearch", *command, cwd=tmp_path)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert f"pip install 'clipsearch[{extra}]'" in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_search_through_the_sdk_and_the_async_client(base_venv: Path, tmp_path: Path) -> None:
    from encoder_service.server import create_server as create_encoder
    from encoder_service.settings import EncoderSettings
    from index_service.server import create_server as create_index
    from index_service.settings import IndexSettings

    encoder_settings = EncoderSettings(port=0, model="clipsearch-tiny", pretrained="random")
    index_settings = IndexSettings(port=0, data_dir=tmp_path / "index")
    with (
        ServerThread(lambda: create_encoder(encoder_settings)) as encoder,
        ServerThread(lambda: create_index(index_settings)) as index,
    ):
        script = textwrap.dedent(
            f"""
            import asyncio, numpy as np
            from clipsearch import SearchClient, aio

            with SearchClient({encoder.address!r}, {index.address!r}) as client:
                client.create_collection("base", exist_ok=True)
                vectors = client.encoder.embed_texts(["a red dress", "a blue hat"])
                client.index.upsert("base", ["dress", "hat"], vectors,
                                    model_fingerprint=client.model.fingerprint)
                print("sync", client.search_text("a red dress", collection="base", k=1)[0].id)

            async def main():
                async with aio.SearchClient({encoder.address!r}, {index.address!r}) as client:
                    hits = await client.search_text("a blue hat", collection="base", k=1)
                    print("aio", hits[0].id)

            asyncio.run(main())
            """
        )
        done = _run(base_venv, "python", "-c", script)
        assert done.returncode == 0, done.stderr
        assert done.stdout.split() == ["sync", "dress", "aio", "hat"]
        cli = _run(
            base_venv, "clipsearch", "search", "--collection", "base", "--text", "a red dress", "-k", "1",
            "--json", "--encoder", encoder.address, "--index", index.address,
        )  # fmt: skip
        assert cli.returncode == 0, cli.stderr
        assert '"id": "dress"' in cli.stdout
