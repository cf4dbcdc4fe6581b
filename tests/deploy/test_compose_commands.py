"""docker-compose.yml is valid, and the commands it runs work when run natively.

There is no Docker engine here, so the test takes each service's command and
health check from the compose file, swaps container ports and paths for local
ones, starts the commands as processes and probes them with the compose health
checks, then runs the demo-ingest job and searches its result.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.functional

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
CONTAINER_PORTS = {"50051": "encoder", "50052": "index", "50053": "gateway", "8501": "ui"}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_compose_config_is_valid() -> None:
    if shutil.which("docker-compose") is None:
        if os.environ.get("CI"):
            pytest.fail("docker-compose (Debian package) is missing in CI")
        pytest.skip("docker-compose is not installed (apt-get install docker-compose)")
    for profiles in ([], ["--profile", "gpu", "--profile", "demo"]):
        done = subprocess.run(
            ["docker-compose", "-f", str(COMPOSE), *profiles, "config", "-q"], capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr


def test_gpu_variant_reserves_a_gpu() -> None:
    spec = yaml.safe_load(COMPOSE.read_text())["services"]["encoder-gpu"]
    [device] = spec["deploy"]["resources"]["reservations"]["devices"]
    assert device["capabilities"] == ["gpu"] and "--device" in spec["command"]


@pytest.mark.slow
def test_compose_commands_run_natively(tmp_path) -> None:
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    ports = {name: str(_free_port()) for name in CONTAINER_PORTS.values()}
    metrics = {"9101": str(_free_port()), "9102": str(_free_port()), "9103": str(_free_port())}
    data = tmp_path / "data"

    def localize(argument: str) -> str:
        for container_port, name in CONTAINER_PORTS.items():
            argument = argument.replace(f"127.0.0.1:{container_port}", f"127.0.0.1:{ports[name]}")
            if argument == container_port:
                return ports[name]
        argument = metrics.get(argument, argument)
        return argument.replace("/data", str(data)).replace("0.0.0.0", "127.0.0.1")

    env = {
        **os.environ,
        "CLIPSEARCH_ENCODER": f"127.0.0.1:{ports['encoder']}",
        "CLIPSEARCH_INDEX": f"127.0.0.1:{ports['index']}",
        "CLIPSEARCH_HOME": str(data / "home"),
    }
    clipsearch = [sys.executable, "-m", "clipsearch.apps.cli"]
    processes = []
    try:
        for name in ("encoder", "index", "gateway", "ui"):
            command = [localize(a) for a in services[name]["command"]]
            log = (tmp_path / f"{name}.log").open("wb")
            processes.append(
                subprocess.Popen(
                    [*clipsearch, *command], env=env, stdout=log, stderr=log, start_new_session=True
                )
            )
            probe = [localize(a) for a in services[name]["healthcheck"]["test"][1:]]  # after CMD
            if probe[0] == "clipsearch":
                probe = [*clipsearch, *probe[1:]]
            elif probe[0] == "python":
                probe = [sys.executable, *probe[1:]]
            _wait_healthy(probe, env, log_path=tmp_path / f"{name}.log")

        job = services["demo-ingest"]["command"][0]
        job = " && ".join(
            " ".join(localize(word) for word in part.split()).replace(
                "clipsearch ", " ".join(clipsearch) + " ", 1
            )
            for part in job.split(" && ")
        ).replace("--products 300", "--products 30")
        subprocess.run(["sh", "-c", job], env=env, check=True, timeout=300)

        found = subprocess.run(
            [*clipsearch, "search", "--collection", "demo", "--text", "a red dress", "-k", "3", "--json"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        assert '"hits"' in found.stdout
        page = f"http://127.0.0.1:{ports['ui']}/api/search/text?q=a+red+dress&k=3"
        with urllib.request.urlopen(page, timeout=30) as response:
            assert len(json.load(response)["hits"]) == 3
    finally:
        for process in processes:
            os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            process.wait(timeout=30)


def _wait_healthy(command: list[str], env: dict, log_path: Path, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if subprocess.run(command, env=env, capture_output=True).returncode == 0:
            return
        time.sleep(0.5)
    tail = log_path.read_text(errors="replace")[-3000:]
    raise AssertionError(f"{command} never reported healthy; its log ends:\n{tail}")
