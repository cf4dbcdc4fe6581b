"""The peers' own virtualenvs, made on first use under ``var/peers/`` (gitignored), pinned.

Each peer gets a venv of its own so its pins (PyTriton wants ``numpy<2``) never touch the
project's. The PyTriton venv must run the *same* model code as our encoder, so it does not
install torch and open_clip again (5.7 GB for torch 2.14.1 and its CUDA wheels): a ``.pth``
file appends the project venv's site-packages to its ``sys.path``. The venv's own packages
come first, so its numpy 1.x and grpcio win; torch, torchvision, open_clip and pillow are the
very files our server imports. ``python benchmarks/peers.py --install-only`` makes them.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PEERS_DIR = ROOT / "var" / "peers"


@dataclass(frozen=True)
class PeerEnv:
    name: str
    packages: tuple[str, ...]
    #: Append the project venv's site-packages (torch, open_clip) to the venv's sys.path.
    share_project_site: bool
    #: Python run in the new venv to check it and report versions (prints one JSON object).
    check: str


PYTRITON = PeerEnv(
    "pytriton",
    ("nvidia-pytriton==0.7.0",),
    share_project_site=True,
    check=(
        "import json, importlib.metadata as m, numpy, torch, open_clip, pytriton, tritonclient;"
        "print(json.dumps({'nvidia-pytriton': m.version('nvidia-pytriton'),"
        " 'tritonclient': m.version('tritonclient'), 'numpy': numpy.__version__,"
        " 'torch': torch.__version__, 'open_clip': open_clip.__version__, 'torch_from': torch.__file__}))"
    ),
)
MILVUS = PeerEnv(
    "milvus",
    ("pymilvus==3.0.2", "milvus-lite==3.2.2"),
    share_project_site=False,
    check=(
        "import json, importlib.metadata as m, pymilvus, milvus_lite;"
        "print(json.dumps({'pymilvus': m.version('pymilvus'), 'milvus-lite': m.version('milvus-lite')}))"
    ),
)
#: The lexical engine measured against SQLite FTS5 (benchmarks/lexical_engines.py, docs/hybrid.md).
TANTIVY = PeerEnv(
    "tantivy",
    ("tantivy==0.27.0",),
    share_project_site=False,
    check="import json, importlib.metadata as m; print(json.dumps({'tantivy': m.version('tantivy')}))",
)
ENVS = {env.name: env for env in (PYTRITON, MILVUS, TANTIVY)}


@dataclass
class Installed:
    name: str
    python: Path
    versions: dict
    created_now: bool
    install_s: float
    size_mb: float

    def describe(self) -> str:
        how = f"installed now in {self.install_s:.0f} s" if self.created_now else "already installed"
        shared = (
            " + the project venv's torch/open_clip via .pth" if ENVS[self.name].share_project_site else ""
        )
        pins = ", ".join(f"{k} {v}" for k, v in self.versions.items() if k != "torch_from")
        return f"{self.name} venv ({how}, {self.size_mb:,.0f} MB on disk{shared}): {pins}"


def venv_dir(name: str) -> Path:
    return PEERS_DIR / f"{name}-venv"


def ensure(env: PeerEnv) -> Installed:
    """The peer's venv, created and installed if missing or made with other pins."""
    target = venv_dir(env.name)
    python = target / "bin" / "python"
    stamp = target / "clipsearch-peer.json"
    wanted = {
        "packages": list(env.packages),
        "project_site": _project_site() if env.share_project_site else "",
    }
    created_now, install_s = False, 0.0
    if not (python.exists() and stamp.exists() and json.loads(stamp.read_text()).get("wanted") == wanted):
        shutil.rmtree(target, ignore_errors=True)
        target.parent.mkdir(parents=True, exist_ok=True)
        print(f"[peers] creating {target} ({' '.join(env.packages)}) ...", flush=True)
        started = time.perf_counter()
        # The base interpreter, not the project venv's: a venv made from a venv links to the base anyway.
        subprocess.run([sys._base_executable, "-m", "venv", str(target)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *env.packages],
            check=True,
        )
        if env.share_project_site:
            site = Path(sysconfig.get_paths(vars={"base": str(target)})["purelib"])
            (site / "zz-clipsearch-project-site.pth").write_text(wanted["project_site"] + "\n")
        install_s = time.perf_counter() - started
        created_now = True
        stamp.write_text(json.dumps({"wanted": wanted, "install_s": install_s}))
    else:
        install_s = json.loads(stamp.read_text()).get("install_s", 0.0)
    checked = subprocess.run([str(python), "-c", env.check], check=True, capture_output=True, text=True)
    versions = json.loads(checked.stdout.strip().splitlines()[-1])
    if env.share_project_site and not versions["torch_from"].startswith(_project_site()):
        raise SystemExit(f"{env.name} venv imports torch from {versions['torch_from']}, not the project's")
    return Installed(env.name, python, versions, created_now, install_s, _size_mb(target))


def _project_site() -> str:
    """site-packages of the interpreter running the benchmark (the project venv: torch, open_clip)."""
    return sysconfig.get_paths()["purelib"]


def _size_mb(path: Path) -> float:
    total = 0
    for item in path.rglob("*"):
        if item.is_file() and not item.is_symlink():
            total += item.stat().st_size
    return total / 2**20


if __name__ == "__main__":
    for env in (ENVS[name] for name in (sys.argv[1:] or ENVS)):
        print(ensure(env).describe())
