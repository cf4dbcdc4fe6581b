"""docker-compose.yml is valid, and the commands it runs work when run natively.

There is no Docker engine here, so the test takes each service's command and
health check from the compose file, swaps container ports and paths for local
ones, starts the commands as processes and probes them with the compose health
checks, then runs the demo-ingest job and searches its result.
"""

from __future__ import annotations

import itertools
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


#: What one can run: the compose files given, with every combination of the profiles they
#: declare switched on (docs/operations.md).
GPU = ROOT / "docker-compose.gpu.yml"
_PROFILES = sorted(
    {p for spec in yaml.safe_load(COMPOSE.read_text())["services"].values() for p in spec.get("profiles", [])}
)
VARIANTS = {
    ", ".join([device, *chosen]): (files, list(chosen))
    for device, files in (("cpu", [COMPOSE]), ("gpu", [COMPOSE, GPU]))
    for chosen in itertools.chain.from_iterable(
        itertools.combinations(_PROFILES, n) for n in range(len(_PROFILES) + 1)
    )
}


def _require_compose() -> None:
    if shutil.which("docker-compose") is None:
        if os.environ.get("CI"):
            pytest.fail("docker-compose (Debian package) is missing in CI")
        pytest.skip("docker-compose is not installed (apt-get install docker-compose)")


def _resolved(files: list[Path], profiles: list[str]) -> dict:
    """The services that run in a variant, as docker-compose merges the files (profiles applied)."""
    flags = [arg for f in files for arg in ("-f", str(f))]
    flags += [arg for p in profiles for arg in ("--profile", p)]
    done = subprocess.run(["docker-compose", *flags, "config"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    services = yaml.safe_load(done.stdout)["services"]
    # docker-compose 1.29's `config` lists every service; a profiled one runs only when asked for.
    return {n: s for n, s in services.items() if not s.get("profiles") or set(s["profiles"]) & set(profiles)}


def _flag(command: list[str], flag: str) -> str | None:
    return command[command.index(flag) + 1] if flag in command else None


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_each_variant_wires_every_caller_to_one_server_per_port(variant: str) -> None:
    """docker-compose config passing is not enough (issue item 8): the gpu profile published the
    encoder's ports a second time and left the gateway, the page and demo-ingest on the CPU one."""
    _require_compose()
    services = _resolved(*VARIANTS[variant])
    published: dict[str, str] = {}
    for name, spec in services.items():
        for mapping in spec.get("ports", []):
            host_side = (
                f"{mapping['host_ip']}:{mapping['published']}"
                if isinstance(mapping, dict)
                else mapping.rsplit(":", 1)[0]
            )
            assert host_side not in published, (
                f"{variant}: {name} and {published[host_side]} both publish {host_side}"
            )
            published[host_side] = name
    encoders = [n for n, s in services.items() if s["command"][:2] == ["serve", "encoder"]]
    assert len(encoders) == 1, f"{variant}: encoders {encoders}"
    for name, spec in services.items():
        for variable, address in spec.get("environment", {}).items():
            host, port = address.rsplit(":", 1)
            assert host in services, f"{variant}: {name}'s {variable} names {host}, which does not run"
            assert _flag(services[host]["command"], "--port") == port, (variant, name, variable)
    encoder = services[encoders[0]]
    on_gpu = _flag(encoder["command"], "--device") == "cuda"
    assert on_gpu == variant.startswith("gpu"), (
        f"{variant}: the encoder the callers use runs on {'gpu' if on_gpu else 'cpu'}"
    )
    if on_gpu:
        [device] = encoder["deploy"]["resources"]["reservations"]["devices"]
        assert device["capabilities"] == ["gpu"] and encoder["image"] == "clipsearch:gpu"


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
