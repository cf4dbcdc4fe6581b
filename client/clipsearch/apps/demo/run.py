"""`make demo`: both services up, the demo catalog ingested, a text and an image query.

The services keep running in the background after this returns, so the CLI (and
the search page) can be tried against them; `make demo-stop` (this module with
--stop) ends them. State lives under ./var/demo: logs, pid files, index data and
the generated catalog.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from clipsearch.apps.output import format_hits
from clipsearch.health import check_health, wait_until_serving
from clipsearch.search_client import SearchClient

COLLECTION = "demo"
TEXT_QUERY = "a red dress"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m clipsearch.apps.demo.run", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--state-dir", type=Path, default=Path("var/demo"))
    parser.add_argument("--encoder-port", type=int, default=50051)
    parser.add_argument("--index-port", type=int, default=50052)
    parser.add_argument("--ui-port", type=int, default=8501, help="port of the search page")
    parser.add_argument("--products", type=int, default=300)
    parser.add_argument(
        "--shop",
        action="store_true",
        help="the catalog as a shop's: 1 to 3 photos per product, tags, prices in USD "
        "(use a fresh --state-dir: an existing demo collection keeps its schema)",
    )
    parser.add_argument("--stop", action="store_true", help="stop the services a previous run started")
    args = parser.parse_args(argv)
    state = args.state_dir.resolve()
    if args.stop:
        return stop_services(state)

    from clipsearch.apps.demo.catalog import SHOP_SCHEMA, ensure_demo_catalog

    print(f"[1/4] demo catalog ({args.products} products{', as a shop' if args.shop else ''})")
    catalog = ensure_demo_catalog(
        state / "catalog", n_products=args.products, images_per_product=3 if args.shop else 1, tags=args.shop
    )
    print(f"      {catalog}")

    print("[2/4] starting the encoder and index services")
    encoder = f"127.0.0.1:{args.encoder_port}"
    index = f"127.0.0.1:{args.index_port}"
    start_service(state, "encoder", encoder, ["--port", str(args.encoder_port)])
    start_service(state, "index", index, ["--port", str(args.index_port), "--data-dir", str(state / "index")])

    with SearchClient(encoder, index) as client:
        print(f"[3/4] ingesting into collection '{COLLECTION}' (model {client.model.name})")
        schema = SHOP_SCHEMA if args.shop else None
        client.create_collection(COLLECTION, num_shards=2, schema=schema, exist_ok=True)
        report = client.ingest(catalog, collection=COLLECTION)
        print(f"      {report.ingested} ingested, {len(report.failed)} failed, {report.seconds:.1f}s")
        for failure in report.failed[:5]:
            print(f"      row {failure.row} {failure.id}: {failure.reason}")

        print("[4/4] queries")
        print(f'\ntext: "{TEXT_QUERY}"')
        print(format_hits(client.search_text(TEXT_QUERY, collection=COLLECTION, k=5)))
        query_image = first_image(catalog)
        print(f"\nimage: {query_image.name}")
        print(format_hits(client.search_image(query_image, collection=COLLECTION, k=5)))

    page = start_ui(state, args.ui_port, encoder, index, catalog.parent)
    clipsearch = Path(sys.executable).with_name("clipsearch")
    print(
        f"\nSearch page: {page}\n"
        f"\nThe services keep running: encoder {encoder}, index {index} (logs in {state / 'logs'}).\n"
        f"Try:  {clipsearch} search --collection {COLLECTION} --text 'a dotted yellow scarf'\n"
        f"Stop: make demo-stop"
    )
    return 0


def start_service(state: Path, name: str, address: str, flags: list[str]) -> None:
    """Starts `clipsearch serve NAME` detached, unless one is already SERVING there."""
    if check_health(address, timeout_s=2) == "SERVING":
        print(f"      {name} already serving at {address}")
        return
    check_port_free(name, address)
    argv = ["serve", name, "--host", "127.0.0.1", *flags]
    start_detached(state, name, argv, address, wait=lambda: wait_until_serving(address, timeout_s=2))


def start_ui(state: Path, port: int, encoder: str, index: str, image_root: Path) -> str:
    """Starts `clipsearch ui` (the search page) detached, unless it already answers; its URL."""
    from clipsearch.apps.ui.probe import is_answering, wait_until_answering

    url = f"http://127.0.0.1:{port}/"
    if is_answering(url):
        print(f"      ui already answering at {url}")
        return url
    check_port_free("ui", f"127.0.0.1:{port}")
    argv = ["ui", "--host", "127.0.0.1", "--port", str(port), "--encoder", encoder, "--index", index]
    argv += ["--collection", COLLECTION, "--image-root", str(image_root)]
    start_detached(state, "ui", argv, url, wait=lambda: wait_until_answering(url, timeout_s=2))
    return url


#: The demo's flag for each service's port (what to tell someone whose port is taken).
PORT_FLAGS = {"encoder": "--encoder-port", "index": "--index-port", "ui": "--ui-port"}


def check_port_free(name: str, address: str) -> None:
    """One sentence, and no traceback, when another program holds the port the demo wants."""
    host, _, port = address.rpartition(":")
    with socket.socket() as probe:
        try:
            probe.bind((host, int(port)))
            return
        except OSError:
            pass
    flag = PORT_FLAGS[name]
    spare = free_port()
    raise SystemExit(
        f"error: the demo's {name} port {address} is in use by another program: stop it, or give the "
        f"demo another port: make demo DEMO_ARGS='{flag} {spare}' "
        f"(python -m clipsearch.apps.demo.run {flag} {spare})"
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_detached(
    state: Path, name: str, argv: list[str], address: str, *, wait: Callable[[], None]
) -> None:
    """Runs `clipsearch ARGV` in its own session with a pid file; returns once ``wait()`` does.

    ``wait`` raises TimeoutError while the process is not ready yet.
    """
    (state / "logs").mkdir(parents=True, exist_ok=True)
    log_path = state / "logs" / f"{name}.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "clipsearch.apps.cli", *argv],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # outlives `make demo`
        )
    (state / f"{name}.pid").write_text(str(process.pid))
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log_path.read_text(errors="replace").splitlines()[-20:]
            raise SystemExit(f"{name} exited with {process.returncode}; last log lines:\n" + "\n".join(tail))
        try:
            wait()
            print(f"      {name} serving at {address} (pid {process.pid})")
            return
        except TimeoutError:
            continue
    raise SystemExit(f"{name} did not become ready within 300 s; see {log_path}")


def stop_services(state: Path) -> int:
    stopped = 0
    for pid_file in sorted(state.glob("*.pid")):
        pid = int(pid_file.read_text())
        try:
            os.kill(pid, signal.SIGTERM)
            for _ in range(150):
                os.kill(pid, 0)
                time.sleep(0.1)
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        pid_file.unlink()
        stopped += 1
        print(f"stopped {pid_file.stem} (pid {pid})")
    if not stopped:
        print("nothing to stop")
    return 0


def first_image(catalog: Path) -> Path:
    """The first product's image file (the demo catalog's images are files beside it)."""
    from clipsearch.catalog import read_catalog

    return catalog.resolve().parent / next(row.image for row in read_catalog(catalog) if row.error is None)


if __name__ == "__main__":
    sys.exit(main())
