"""Damaged files at start: recover every acknowledged write, or refuse with a clear error.

A data directory is copied while its engine is open (the state kill -9 leaves: the WAL
holds the recent commits) and damaged copy by copy: newest snapshot truncated or with
bytes flipped, every snapshot of a shard truncated, the WAL tail torn inside the last
commit, the database file truncated or with bytes flipped. Each copy is opened by the
engine the server runs (``Engine``; a ``CollectionLoadError`` there sets the collection aside,
quarantined, while the server starts) and, when it opens, checked against the ledger: every
acknowledged item with its exact vector and metadata, no deleted id, the count exact, each
item searching back to itself. Only the refusals the store means to give count as refusals
(``expected_refusal``); any other exception fails the test.
"""

from __future__ import annotations

import contextlib
import random
import shutil
import sqlite3
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from reliability_support import report, size

from clipsearch.errors import DataLossError, InternalError
from index_service.config import CollectionConfig, Metric
from index_service.engine import CollectionLoadError, Engine, EngineOptions

pytestmark = pytest.mark.reliability

NAME, DIM = "torn", 8


@dataclass
class Base:
    crashed: Path  # copied while open: the last commit lives in the WAL
    closed: Path  # copied after a clean close: everything in store.sqlite
    vectors: dict[str, np.ndarray] = field(default_factory=dict)
    metadata: dict[str, dict] = field(default_factory=dict)
    deleted: set[str] = field(default_factory=set)
    last_write: list[str] = field(default_factory=list)  # its WAL frames are the torn tail
    wal_before_last: int = 0


def _engine(path: Path) -> Engine:
    return Engine(EngineOptions(data_dir=path, background=False, search_threads=1))


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Base:
    root = tmp_path_factory.mktemp("torn")
    live = root / "live"
    rng = np.random.default_rng(3)
    ledger = Base(crashed=root / "crashed", closed=root / "closed")
    engine = _engine(live)
    engine.create_collection(CollectionConfig(NAME, DIM, Metric.L2, num_shards=2))
    collection = engine.collection(NAME)

    def upsert(batch: int) -> list[str]:
        ids = [f"b{batch}-{j}" for j in range(40)]
        vecs = rng.standard_normal((40, DIM)).astype(np.float32)
        meta = [{"batch": batch, "j": j, "tag": f"t{j % 3}"} for j in range(40)]
        collection.upsert(ids, vecs, meta)
        for i, v, m in zip(ids, vecs, meta, strict=True):
            ledger.vectors[i], ledger.metadata[i] = v, m
        return ids

    for batch in range(6):
        upsert(batch)
        if batch in (1, 3):
            collection.snapshot_all()  # two snapshots per shard; later writes need replay
        if batch % 2:
            doomed = [f"b{batch - 1}-{j}" for j in range(0, 40, 5)]
            collection.delete(doomed)
            ledger.deleted.update(doomed)
    wal = live / "collections" / NAME / "store.sqlite-wal"
    ledger.wal_before_last = wal.stat().st_size
    ledger.last_write = upsert(99)
    shutil.copytree(live, ledger.crashed)
    engine.close(snapshot=False)
    shutil.copytree(live, ledger.closed)
    # Whether the close checkpointed depends on timing; make "closed" mean everything in store.sqlite.
    with contextlib.closing(sqlite3.connect(ledger.closed / "collections" / NAME / "store.sqlite")) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return ledger


def expected_refusal(exc: CollectionLoadError) -> bool:
    """Whether a refused start is the store finding the damage, not some other failure.

    The causes it may have: SQLite's own checks (``sqlite3.DatabaseError``, e.g. "database
    disk image is malformed"), also as the store's ``InternalError`` "storage error" around
    one; a row or the id index failing its check (``DataLossError``); or a file cut so short
    it holds no collection config (the ``RuntimeError`` "not a collection").
    """
    cause = exc.__cause__
    if isinstance(cause, InternalError):
        cause = cause.__cause__
    if isinstance(cause, (sqlite3.DatabaseError, DataLossError)):
        return True
    return type(cause) is RuntimeError and "not a collection" in str(cause)


def check(path: Path, base: Base, *, last_write_acknowledged: bool) -> str:
    """'refused', 'recovered' or 'read refused'; AssertionError when a damaged copy serves wrong data.

    Any exception but the expected refusals propagates: it is a failure, not a refusal.
    """
    engine = _engine(path)
    set_aside = engine._quarantined.get(NAME)  # the start refuses the collection (quarantine), not the server
    if set_aside is not None:
        engine.close(snapshot=False)
        if not expected_refusal(set_aside.error):
            raise set_aside.error
        assert set_aside.reason.strip(), f"refused without a message: {set_aside.error!r}"
        return "refused"
    try:
        collection = engine.collection(NAME)
        got = {i.id: i for i in collection.get(list(base.vectors), include_vectors=True, missing_ok=True)}
        last = set(base.last_write)
        present_last = len(last & set(got))
        if last_write_acknowledged:
            assert present_last == len(last), f"{path.name}: the acknowledged last write is missing"
        else:
            assert present_last in (0, len(last)), f"{path.name}: the torn write was applied partly"
        expected = {i for i in base.vectors if i not in base.deleted and (i not in last or present_last)}
        assert set(got) == expected, f"{path.name}: items {sorted(set(got) ^ expected)[:5]} differ"
        for item_id, item in got.items():
            assert np.array_equal(item.vector, base.vectors[item_id]), f"{path.name}: {item_id} vector"
            assert item.metadata == base.metadata[item_id], f"{path.name}: {item_id} metadata"
        assert collection.info().item_count == len(expected), f"{path.name}: item count"
        sample = sorted(expected)[::7]
        hits = collection.search(np.stack([base.vectors[i] for i in sample]), k=1)
        assert [h[0].id for h in hits] == sample, f"{path.name}: items do not search back to themselves"
        return "recovered"
    except DataLossError as exc:  # the damage is found on a read: DATA_LOSS, not a wrong answer
        assert str(exc).strip(), f"a read failed without a message: {exc!r}"
        return "read refused"
    finally:
        engine.close(snapshot=False)


def damaged_copy(source: Path, target: Path, relative: str, damage) -> Path:
    shutil.copytree(source, target)
    damage(target / "collections" / NAME / relative)
    return target


def truncate_to(n: int):
    def damage(path: Path) -> None:
        with open(path, "r+b") as f:
            f.truncate(n)

    return damage


def flip_at(positions: list[int], mask: int = 0xFF):
    def damage(path: Path) -> None:
        data = bytearray(path.read_bytes())
        for p in positions:
            data[p] ^= mask
        path.write_bytes(bytes(data))

    return damage


def cut_points(rng: random.Random, low: int, high: int, count: int) -> list[int]:
    fixed = {low, low + 1, (low + high) // 2, high - 1}
    return sorted(fixed | {rng.randrange(low, high) for _ in range(count)})


def newest_snapshot(root: Path, shard: int = 0) -> str:
    files = sorted((root / "collections" / NAME / f"shard-{shard:04d}").glob("snap-*.faiss"))
    assert len(files) == 2, files
    return str(files[-1].relative_to(root / "collections" / NAME))


def damage_and_check(
    source: Path, target: Path, relative: str, damage, base: Base, *, last_write_acknowledged: bool
) -> str:
    """Checks one damaged copy, then removes it; returns the outcome, 'served wrong data' included."""
    copy = damaged_copy(source, target, relative, damage)
    try:
        return check(copy, base, last_write_acknowledged=last_write_acknowledged)
    except AssertionError as exc:
        print(f"WRONG DATA after damaging {relative} ({target.name}): {str(exc).splitlines()[0]}")
        return "served wrong data"
    finally:
        shutil.rmtree(copy)


def test_torn_or_flipped_snapshot_recovers_everything(base: Base, tmp_path: Path) -> None:
    rng = random.Random(1)
    relative = newest_snapshot(base.crashed)
    length = (base.crashed / "collections" / NAME / relative).stat().st_size
    damages = [(f"cut-{n}", truncate_to(n)) for n in cut_points(rng, 0, length, size(20, 150))]
    flips = size(20, 150)
    for trial in range(flips):
        damages.append((f"flip-{trial}", flip_at([rng.randrange(length) for _ in range(rng.randint(1, 4))])))

    def both(path: Path) -> None:  # every snapshot of the shard torn: rebuilt from the store
        for snap in path.parent.glob("snap-*.faiss"):
            truncate_to(snap.stat().st_size // 2)(snap)

    damages.append(("both", both))
    outcomes = Counter(
        damage_and_check(base.crashed, tmp_path / label, relative, d, base, last_write_acknowledged=True)
        for label, d in damages
    )
    report(
        "torn_snapshot",
        truncations=len(damages) - flips - 1,
        flips=flips,
        both_snapshots_torn=1,
        snapshot_bytes=length,
        outcomes=dict(outcomes),
    )
    assert outcomes == {"recovered": len(damages)}, "a damaged snapshot must never block the start"


def test_torn_wal_tail_keeps_every_earlier_commit(base: Base, tmp_path: Path) -> None:
    """The WAL torn inside the last commit (the only one a crash can tear: an ack follows the fsync)."""
    rng = random.Random(2)
    relative = "store.sqlite-wal"
    length = (base.crashed / "collections" / NAME / relative).stat().st_size
    assert length > base.wal_before_last > 0
    cuts = cut_points(rng, base.wal_before_last, length, size(20, 150))
    damages = [(f"cut-{n}", truncate_to(n)) for n in cuts]
    flips = size(20, 150)
    damages += [(f"flip-{t}", flip_at([rng.randrange(base.wal_before_last, length)])) for t in range(flips)]
    outcomes = Counter(
        damage_and_check(base.crashed, tmp_path / label, relative, d, base, last_write_acknowledged=False)
        for label, d in damages
    )
    report(
        "torn_wal_tail",
        truncations=len(cuts),
        flips=flips,
        last_commit_bytes=length - base.wal_before_last,
        outcomes=dict(outcomes),
    )
    assert outcomes == {"recovered": len(damages)}


def test_truncated_database_refuses_to_start(base: Base, tmp_path: Path) -> None:
    rng = random.Random(3)
    relative = "store.sqlite"
    length = (base.closed / "collections" / NAME / relative).stat().st_size
    cuts = cut_points(rng, 0, length, size(15, 100))
    outcomes = Counter(
        damage_and_check(
            base.closed, tmp_path / f"cut-{n}", relative, truncate_to(n), base, last_write_acknowledged=True
        )
        for n in cuts
    )
    report("truncated_database", truncations=len(cuts), database_bytes=length, outcomes=dict(outcomes))
    assert "served wrong data" not in outcomes and outcomes["refused"] >= 1


def test_flipped_database_bytes_are_refused_or_recovered(base: Base, tmp_path: Path) -> None:
    """Random 1-byte flips anywhere in store.sqlite: recovered, or refused; never wrong data served.

    Row checksums (``vector_crc``, ``row_crc``) catch a flipped value, the id-index check at
    open catches a flipped index entry, SQLite's own checks catch structural damage.
    """
    rng = random.Random(4)
    relative = "store.sqlite"
    path = base.closed / "collections" / NAME / relative
    length = path.stat().st_size
    flips = size(30, 200)
    outcomes = Counter(
        damage_and_check(
            base.closed,
            tmp_path / f"flip-{t}",
            relative,
            flip_at([rng.randrange(length)]),
            base,
            last_write_acknowledged=True,
        )
        for t in range(flips)
    )
    report("flipped_database", flips=flips, database_bytes=length, outcomes=dict(outcomes))
    assert "served wrong data" not in outcomes, outcomes
    assert set(outcomes) <= {"recovered", "refused", "read refused"}


def test_flipped_value_is_data_loss_not_served(base: Base, tmp_path: Path) -> None:
    """One byte inside a stored vector, then inside stored metadata: DataLossError, never the value.

    The metadata flip keeps the text valid ("t1" -> "t0"), so only the checksum can tell.
    """
    data = (base.closed / "collections" / NAME / "store.sqlite").read_bytes()
    victim = next(i for i in sorted(base.vectors) if i not in base.deleted)
    vector_at = data.index(base.vectors[victim].astype("<f4").tobytes())
    copy = damaged_copy(base.closed, tmp_path / "vector", "store.sqlite", flip_at([vector_at + 2]))
    engine = _engine(copy)  # the vector sits in a snapshot too, so the shard opens ...
    try:
        with pytest.raises(DataLossError, match="fails its checksum"):  # ... and the read refuses
            engine.collection(NAME).get([victim], include_vectors=True)
    finally:
        engine.close(snapshot=False)

    metadata_at = data.index(b'"tag":"t1"')
    copy = damaged_copy(base.closed, tmp_path / "metadata", "store.sqlite", flip_at([metadata_at + 8], 0x01))
    engine = _engine(copy)  # read by every start: the collection is refused (quarantined)
    try:
        assert "fails its checksum" in str(engine._quarantined[NAME].error)
    finally:
        engine.close(snapshot=False)
