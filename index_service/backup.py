"""Online backups of collections as tar archives, and their verified restore.

An archive is laid out like a data directory, so ``tar -xf backup.tar -C <empty-dir>`` gives
a data directory a server can start on::

    collections/<name>/store.sqlite                 SQLite's online backup of the store
    collections/<name>/shard-NNNN/snap-<seq>.faiss  each shard's newest snapshot, if any
    aliases.json                                    (backups of every collection)
    manifest.json                                   format, and per collection: items, sequence

Consistency: each collection's snapshots are copied first, then its store, all while its
maintenance is held (no snapshot is written or removed meanwhile). The store copy is one
read transaction, so it holds exactly the writes committed when it started: every write
acknowledged before the backup call, and none half. A snapshot is older than the store copy,
which is what a restart expects (the store is replayed over it). Writes go on throughout.

A restore unpacks into ``tmp/``, opens every collection there (which checks every row's
checksum, the id index and the snapshots against the store), checks every vector's
checksum and the item counts of the manifest, and only then renames it into place.
"""

from __future__ import annotations

import json
import shutil
import tarfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from clipsearch.errors import AlreadyExistsError, InvalidArgumentError
from index_service.aliases import ALIASES_FILE, Alias
from index_service.config import CollectionInfo, check_name

if TYPE_CHECKING:
    from index_service.engine import Engine

FORMAT = "clipsearch-backup"
VERSION = 1
MANIFEST = "manifest.json"
#: Bytes per streamed message (gRPC's default limit is 4 MiB).
CHUNK_BYTES = 1 << 20


@dataclass(frozen=True)
class BackedUp:
    name: str
    items: int
    sequence: int


def write_archive(engine: Engine, collection: str, target: Path) -> list[BackedUp]:
    """Writes the archive of one collection (or of all, with aliases, when ``collection`` is "")."""
    names = [engine.resolve(collection)] if collection else [n for n, _ in engine.collections()]
    done: list[BackedUp] = []
    staging = engine.root / "tmp" / f"backup-{uuid.uuid4().hex}"
    try:
        with tarfile.open(target, "w") as tar:
            for name in names:
                folder = staging / name
                items, sequence = engine.collection(name).backup_to(folder)
                tar.add(folder, arcname=f"collections/{name}")
                shutil.rmtree(folder)
                done.append(BackedUp(name, items, sequence))
            if not collection:
                aliases = {
                    a.alias: {"collection": a.collection, "previous": ""} for a in engine.list_aliases()
                }
                _add_bytes(tar, ALIASES_FILE, json.dumps(aliases, indent=1, sort_keys=True).encode())
            manifest = {
                "format": FORMAT,
                "version": VERSION,
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "collections": [vars(b) for b in done],
            }
            _add_bytes(tar, MANIFEST, json.dumps(manifest, indent=1).encode())
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return done


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    import io

    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = int(time.time())
    tar.addfile(info, io.BytesIO(data))


def restore_archive(engine: Engine, archive: Path, *, rename: str = "") -> list[CollectionInfo]:
    """Restores the collections of an archive (and, for a whole backup, its free aliases)."""
    if rename:
        check_name(rename, "rename")
    staging = engine.root / "tmp" / f"restore-{uuid.uuid4().hex}"
    try:
        manifest, has_aliases = _unpack(archive, staging)
        entries = manifest["collections"]
        if rename and len(entries) != 1:
            raise InvalidArgumentError(
                f"rename: the archive holds {len(entries)} collections; rename restores exactly one",
                field="rename",
            )
        wanted = [(e["name"], rename or e["name"], int(e["items"])) for e in entries]
        for _, final, _ in wanted:
            engine.check_name_free(final)
        infos = [
            engine.adopt(staging / "collections" / name, final, expected_items=items)
            for name, final, items in wanted
        ]
        if has_aliases and not rename:
            _restore_aliases(engine, json.loads((staging / ALIASES_FILE).read_text()))
        return [engine.describe(info.config.name) for info in infos]
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _unpack(archive: Path, staging: Path) -> tuple[dict[str, Any], bool]:
    """Checks the archive's members and manifest, and extracts it into ``staging``."""
    try:
        tar = tarfile.open(archive, "r:*")
    except tarfile.TarError as exc:
        raise InvalidArgumentError(f"data: not a backup archive ({exc})", field="data") from None
    with tar:
        members = tar.getmembers()
        names = {m.name for m in members}
        for member in members:
            _check_member(member)
        if MANIFEST not in names:
            raise InvalidArgumentError("data: the archive has no manifest.json: not a backup", field="data")
        extracted = tar.extractfile(MANIFEST)
        assert extracted is not None
        try:
            manifest = json.loads(extracted.read())
            valid = manifest["format"] == FORMAT and isinstance(manifest["collections"], list)
        except (ValueError, KeyError, TypeError):
            valid = False
        if not valid:
            raise InvalidArgumentError(
                "data: manifest.json is not a clipsearch backup manifest", field="data"
            )
        if manifest.get("version", 0) > VERSION:
            raise InvalidArgumentError(
                f"data: backup format version {manifest['version']} is newer than this server's ({VERSION})",
                field="data",
            )
        for entry in manifest["collections"]:
            check_name(str(entry.get("name", "")), "data")
            if f"collections/{entry['name']}/store.sqlite" not in names:
                raise InvalidArgumentError(f"data: the archive lacks {entry['name']!r}'s store", field="data")
        staging.mkdir(parents=True)
        tar.extractall(staging, filter="data")
    return manifest, ALIASES_FILE in names


def _check_member(member: tarfile.TarInfo) -> None:
    """Only the files a backup writes: no links, devices, absolute paths or ``..``."""
    path = PurePosixPath(member.name)
    parts = path.parts
    ok = not path.is_absolute() and ".." not in parts and (member.isfile() or member.isdir())
    if ok and member.isfile():
        ok = member.name in (MANIFEST, ALIASES_FILE) or (
            len(parts) >= 3 and parts[0] == "collections" and parts[-1].endswith((".sqlite", ".faiss"))
        )
    if not ok:
        raise InvalidArgumentError(f"data: unexpected member {member.name!r} in the archive", field="data")


def _restore_aliases(engine: Engine, aliases: dict[str, dict[str, str]]) -> None:
    free = []
    for name, entry in sorted(aliases.items()):
        try:
            engine.check_name_free(name)
        except AlreadyExistsError:
            continue
        if any(name == c for c, _ in engine.collections()) or entry["collection"] not in dict(
            engine.collections()
        ):
            continue
        free.append(Alias(name, entry["collection"], ""))
    engine.aliases.restore(free)


def stream_file(path: Path, chunk_bytes: int = CHUNK_BYTES) -> Callable[[], bytes]:
    """A reader of ``path`` in chunks (b"" at the end), for the servicer's stream."""
    handle = open(path, "rb")

    def read() -> bytes:
        data = handle.read(chunk_bytes)
        if not data:
            handle.close()
        return data

    return read
