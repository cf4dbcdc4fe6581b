"""FAISS snapshot files: derived state, written atomically and checked before use.

A file is a fixed header then the ``faiss.serialize_index`` payload::

    magic "CSIDXSN1" | sequence u64 | payload length u64 | crc32 u32 | trained u8 | pad | uuid 16s

It is written to a temporary name, fsynced, renamed into place and the directory fsynced,
so a crash leaves either the old set of files or the new one. On load a file is refused
when it is short (torn), its checksum differs, it belongs to another collection (uuid), or
it claims a sequence beyond the database's (stale: the database does not know its writes).
"""

from __future__ import annotations

import logging
import os
import re
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

log = logging.getLogger(__name__)

MAGIC = b"CSIDXSN1"
_HEADER = struct.Struct("<8sQQIB3x16s20x")
_NAME = re.compile(r"snap-(\d{20})\.faiss")
KEEP = 2


@dataclass(frozen=True)
class Snapshot:
    path: Path
    sequence: int
    trained: bool
    index: faiss.Index


class SnapshotError(Exception):
    """The file cannot be used (torn, corrupt, foreign or stale)."""


def write(directory: Path, sequence: int, payload: np.ndarray, trained: bool, collection_uuid: str) -> Path:
    """Writes ``payload`` (from ``faiss.serialize_index``) durably; returns the file's path."""
    # ndarray.data is memoryview(payload); numpy only declares __buffer__ for Python >= 3.12.
    crc = zlib.crc32(payload.data)
    header = _HEADER.pack(MAGIC, sequence, len(payload), crc, int(trained), bytes.fromhex(collection_uuid))
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / f"snap-{sequence:020d}.faiss"
    temp = directory / f".{final.name}.{os.getpid()}.tmp"
    with open(temp, "wb") as out:
        out.write(header)
        out.write(payload.data)
        out.flush()
        os.fsync(out.fileno())
    os.replace(temp, final)
    fsync_dir(directory)
    _prune(directory, keep_from=sequence)
    return final


def _prune(directory: Path, keep_from: int) -> None:
    """Keeps the newest :data:`KEEP` snapshots up to ``keep_from``; removes leftover temp files."""
    older = sorted((seq, path) for seq, path in listing(directory) if seq <= keep_from)
    for _, path in older[:-KEEP]:
        path.unlink(missing_ok=True)
    for temp in directory.glob(".snap-*.tmp"):
        temp.unlink(missing_ok=True)


def listing(directory: Path) -> list[tuple[int, Path]]:
    """(sequence, path) of the snapshot files, newest first."""
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in directory.iterdir() if (m := _NAME.fullmatch(p.name))]
    return sorted(found, reverse=True)


def read(path: Path, *, collection_uuid: str, max_sequence: int) -> Snapshot:
    data = path.read_bytes()
    if len(data) < _HEADER.size:
        raise SnapshotError(f"{path.name}: shorter than its header ({len(data)} bytes)")
    magic, sequence, length, crc, trained, owner = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise SnapshotError(f"{path.name}: not a snapshot (magic {magic!r})")
    payload = memoryview(data)[_HEADER.size :]
    if len(payload) != length:
        raise SnapshotError(f"{path.name}: torn, {len(payload)} of {length} payload bytes")
    if zlib.crc32(payload) != crc:
        raise SnapshotError(f"{path.name}: checksum mismatch")
    if owner.hex() != collection_uuid:
        raise SnapshotError(f"{path.name}: belongs to another collection ({owner.hex()})")
    if sequence > max_sequence:
        raise SnapshotError(f"{path.name}: covers sequence {sequence}, beyond the database's {max_sequence}")
    index = faiss.deserialize_index(np.frombuffer(payload, dtype=np.uint8))
    return Snapshot(path, sequence, bool(trained), index)


def quarantine(path: Path, reason: str) -> None:
    log.warning("ignoring snapshot %s: %s", path, reason)
    try:
        path.rename(path.with_name(path.name + ".invalid"))
    except OSError:
        log.exception("could not set %s aside", path)


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
