"""``clipsearch backup|restore``: consistent online backups as tar archives, verified restores."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from clipsearch.apps.cli.common import add_addresses, existing_file


def add(commands: argparse._SubParsersAction) -> None:
    backup = commands.add_parser(
        "backup", help="write a consistent backup of one collection (or all, with aliases) while writes go on"
    )
    backup.add_argument("output", type=Path, help="the archive to write (.tar)")
    backup.add_argument("--collection", default="", help="one collection (default: all, with their aliases)")
    restore = commands.add_parser("restore", help="restore a backup archive (verified before it serves)")
    restore.add_argument("archive", type=existing_file)
    restore.add_argument(
        "--as", dest="rename", default="", help="restore a one-collection archive under this name"
    )
    for sub in (backup, restore):
        add_addresses(sub, encoder=False)
        sub.set_defaults(handler=_run)
    backup.set_defaults(timeout=3600.0)
    restore.set_defaults(timeout=3600.0)


def _run(args: argparse.Namespace) -> int:
    from clipsearch.index_client import IndexClient

    started = time.perf_counter()
    with IndexClient(args.index) as index:
        if args.command == "backup":
            size = index.backup(args.output, collection=args.collection, timeout_s=args.timeout)
            seconds = time.perf_counter() - started
            rate = size / 1e6 / max(seconds, 1e-9)
            print(f"wrote {args.output} ({size / 1e6:.1f} MB in {seconds:.1f}s, {rate:.0f} MB/s)")
        else:
            infos = index.restore(args.archive, rename=args.rename, timeout_s=args.timeout)
            seconds = time.perf_counter() - started
            for info in infos:
                print(f"restored {info.name}: {info.item_count} items (verified) in {seconds:.1f}s")
    return 0
