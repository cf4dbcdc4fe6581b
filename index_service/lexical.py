"""The lexical index of a collection: BM25 over its text and keyword fields, inside its store.

It lives in the collection's SQLite file as SQLite FTS5 tables (the engine choice and its
measurements: docs/hybrid.md), so it is written **in the store's own write transaction**:
the items and their terms commit or roll back together, and kill -9 can never leave one
side without the other. Nothing here commits, rolls back or begins: every write method is
meant to be called on the store's writer connection inside its open transaction.

Items are keyed by the store's *label* (its FAISS id): a replaced item gets a new label, and
the store's change lists the labels it removed, which :meth:`LexicalIndex.delete` takes.

Tables (``LEXICAL_VERSION`` 1, recorded in ``lex_meta``):

- ``lex_fts``: FTS5, one row per item (rowid = label): the item id, then one column of
  analysed terms (:mod:`index_service.analysis`) per indexed field, BM25 with per-field
  weights. ``detail=column``: no positions (no phrase queries), a smaller index.
- ``lex_terms``: the vocabulary with document frequencies, ``lex_deletes``: each alphabetic
  term under itself and every one-deletion of it (symmetric-delete typo candidates);
  typo and prefix tolerance search them, so no query scans the vocabulary.
- ``lex_keys``: exact keys of keyword fields (letters and digits only, case folded where the
  schema says so), so a SKU typed with or without dashes finds its item exactly.

The search is bounded: at most ``max_query_terms`` terms, ``max_expansions`` alternatives
each, one FTS5 query per tier (at most one per term, each ranking no more rows than its
rarest term holds), and at most ``max_scan`` ranked rows read per tier while a filter
rejects rows.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from clipsearch.schema import FieldType, Schema
from index_service import analysis

LEXICAL_VERSION = "1"
_CHUNK = 500  # values per "IN (...)", below SQLite's variable limit
#: Longest alphabetic term given typo keys (its one-deletions): bounds the vocabulary rows.
_MAX_FUZZY_TERM = 24
_MIN_FUZZY_TERM = 3

#: Selects which labels a filter lets through: a mask over the labels given.
Allowed = Callable[[np.ndarray], np.ndarray]
#: One item to index: (label, item id, metadata as a dict or its stored JSON).
Row = tuple[int, str, "Mapping[str, Any] | str"]


@dataclass(frozen=True)
class IndexedField:
    name: str
    #: keyword and keywords fields: also matched as whole values (exact keys).
    exact: bool = False
    #: Exact keys compare ignoring case (the schema's ``case_insensitive``).
    case_insensitive: bool = False


@dataclass(frozen=True)
class LexicalFields:
    """Which metadata fields the lexical index holds, in column order."""

    fields: tuple[IndexedField, ...]

    @classmethod
    def from_schema(cls, schema: Schema | None) -> LexicalFields:
        """Text fields, and keyword(s) fields (tokenised and exact): the schema's string fields."""
        chosen = []
        for f in schema.fields if schema is not None else ():
            if f.type == FieldType.TEXT:
                chosen.append(IndexedField(f.name))
            elif f.type in (FieldType.KEYWORD, FieldType.KEYWORDS):
                chosen.append(IndexedField(f.name, exact=True, case_insensitive=f.case_insensitive))
        return cls(tuple(chosen))

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.fields]

    def to_json(self) -> str:
        return json.dumps([[f.name, f.exact, f.case_insensitive] for f in self.fields])

    @classmethod
    def from_json(cls, text: str) -> LexicalFields:
        return cls(tuple(IndexedField(name, exact, folded) for name, exact, folded in json.loads(text)))


@dataclass(frozen=True)
class SearchOptions:
    #: Field name -> BM25 weight (1.0 when not named).
    weights: Mapping[str, float] = field(default_factory=dict)
    max_query_terms: int = 16
    #: Alternatives (typo corrections, completions) per query term that is not in the vocabulary.
    max_expansions: int = 4
    #: Shortest query term completed as a prefix (``dres`` -> ``dress``).
    min_prefix: int = 3
    #: Ranked rows read at most while a filter rejects them.
    max_scan: int = 5000
    #: An exact keyword key held by more items than this is not reported as an exact match
    #: (a SKU or a model number is; ``red`` in a colour field is just a word).
    exact_max_items: int = 10
    #: Pieces of the query one exact key may span (``SAL SN 733103`` is three).
    max_key_pieces: int = 4
    #: Still short after every tier: rank the items holding any query word. A keyword search
    #: wants its page full; a hybrid search has the vector side for that (and this tier can
    #: rank ~10^4 rows: a SKU's brand code is in every item of its brand).
    fill_any_word: bool = True


@dataclass(frozen=True)
class LexicalHit:
    label: int
    id: str
    #: BM25 (higher is better; FTS5's ``bm25()`` negated).
    score: float
    #: Query terms this item matched, ``"rde→red"`` where a correction or completion did.
    matched: tuple[str, ...] = ()
    #: Keyword fields whose whole value the query names (``sku``).
    exact: tuple[str, ...] = ()


@dataclass(frozen=True)
class QueryTerm:
    """One analysed query term and the vocabulary terms it searches for (itself first if known)."""

    text: str
    alternatives: tuple[str, ...]
    #: The word as the query wrote it (folded), for explanations.
    typed: str = ""


class LexicalIndex:
    """The lexical tables of one collection for one set of fields; see the module docstring."""

    def __init__(self, fields: LexicalFields):
        self.fields = fields
        self._columns = [f"c{i}" for i in range(len(fields.fields))]
        #: "rowid, item_id, c0, c1, ...": what the writes and the explanations read.
        self._row = ", ".join(["rowid", "item_id", *self._columns])

    # -- tables ------------------------------------------------------------------------------

    @staticmethod
    def installed(conn: sqlite3.Connection) -> LexicalFields | None:
        """The fields the file's lexical tables hold; None when it has none (or of another version)."""
        if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'lex_meta'").fetchone() is None:
            return None
        meta = dict(conn.execute("SELECT key, value FROM lex_meta").fetchall())
        if meta.get("version") != LEXICAL_VERSION or "fields" not in meta:
            return None
        return LexicalFields.from_json(meta["fields"])

    def install(self, conn: sqlite3.Connection) -> None:
        """Drops any lexical tables and creates empty ones for these fields (caller's transaction)."""
        for table in ("lex_fts", "lex_terms", "lex_deletes", "lex_keys", "lex_meta"):
            conn.execute(f"DROP TABLE IF EXISTS {table}")
        columns = ", ".join(["item_id UNINDEXED", *self._columns])
        conn.execute(
            f"CREATE VIRTUAL TABLE lex_fts USING fts5({columns}, "
            "tokenize = 'unicode61 remove_diacritics 0', detail = column)"
        )
        conn.execute("CREATE TABLE lex_terms (term TEXT PRIMARY KEY, df INTEGER NOT NULL) WITHOUT ROWID")
        conn.execute(
            "CREATE TABLE lex_deletes (variant TEXT NOT NULL, term TEXT NOT NULL,"
            " PRIMARY KEY (variant, term)) WITHOUT ROWID"
        )
        conn.execute(
            "CREATE TABLE lex_keys (key TEXT NOT NULL, field TEXT NOT NULL, label INTEGER NOT NULL,"
            " PRIMARY KEY (key, field, label)) WITHOUT ROWID"
        )
        conn.execute("CREATE INDEX lex_keys_by_label ON lex_keys (label)")
        conn.execute("CREATE TABLE lex_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        conn.executemany(
            "INSERT INTO lex_meta (key, value) VALUES (?, ?)",
            [("version", LEXICAL_VERSION), ("fields", self.fields.to_json())],
        )

    @staticmethod
    def set_sequence(conn: sqlite3.Connection, sequence: int) -> None:
        """Records, in the caller's write transaction, the store sequence the tables reflect.

        A store written by a release without the lexical index leaves its tables behind that
        sequence; :meth:`sequence` then differs from the store's and the opener rebuilds them.
        """
        conn.execute("INSERT OR REPLACE INTO lex_meta (key, value) VALUES ('sequence', ?)", (str(sequence),))

    @staticmethod
    def sequence(conn: sqlite3.Connection) -> int | None:
        """The store sequence recorded by :meth:`set_sequence`; None without lexical tables."""
        if LexicalIndex.installed(conn) is None:
            return None
        row = conn.execute("SELECT value FROM lex_meta WHERE key = 'sequence'").fetchone()
        return int(row[0]) if row is not None else 0

    def rebuild(self, conn: sqlite3.Connection, rows: Iterable[Row], batch: int = 2000) -> int:
        """The tables anew from stored items (recovery, upgrade, new fields); returns items indexed.

        In the caller's transaction: a store opened without lexical tables, with tables for
        other fields (the schema grew) or behind its sequence (:meth:`sequence`) rebuilds them
        from its ``items`` (:func:`stored_rows`); until that transaction commits the old
        tables stand, so a crash mid-rebuild leaves the old state and the next open rebuilds.
        """
        self.install(conn)
        count = 0
        chunk: list[Row] = []
        for row in rows:
            chunk.append(row)
            if len(chunk) >= batch:
                count += self.write(conn, chunk)
                chunk = []
        return count + self.write(conn, chunk)

    # -- writes (the caller's open transaction) ------------------------------------------------

    def write(self, conn: sqlite3.Connection, rows: Sequence[Row]) -> int:
        """Indexes items; a label already indexed is replaced. Returns the number written."""
        if not rows:
            return 0
        self.delete(conn, [label for label, _, _ in rows])
        documents = []
        term_counts: dict[str, int] = {}
        keys: list[tuple[str, str, int]] = []
        for label, item_id, metadata in rows:
            values = json.loads(metadata) if isinstance(metadata, str) else metadata
            columns, doc_terms = self._analyse(values)
            documents.append((int(label), item_id, *columns))
            for term in doc_terms:
                term_counts[term] = term_counts.get(term, 0) + 1
            keys.extend((key, name, int(label)) for name, key in self._keys(values))
        marks = ", ".join("?" * (len(self._columns) + 2))
        conn.executemany(f"INSERT INTO lex_fts ({self._row}) VALUES ({marks})", documents)
        known = _existing_terms(conn, list(term_counts))
        conn.executemany(
            "INSERT INTO lex_terms (term, df) VALUES (?, ?)"
            " ON CONFLICT (term) DO UPDATE SET df = df + excluded.df",
            list(term_counts.items()),
        )
        conn.executemany(
            "INSERT OR IGNORE INTO lex_deletes (variant, term) VALUES (?, ?)",
            [(variant, term) for term in term_counts if term not in known for variant in _typo_keys(term)],
        )
        conn.executemany("INSERT OR IGNORE INTO lex_keys (key, field, label) VALUES (?, ?, ?)", keys)
        return len(rows)

    def delete(self, conn: sqlite3.Connection, labels: Iterable[int]) -> int:
        """Removes items by label (labels not indexed are ignored); returns how many were."""
        wanted = sorted({int(label) for label in labels})
        gone: dict[str, int] = {}
        found = []
        for chunk in _chunks(wanted):
            for row in conn.execute(
                f"SELECT {self._row} FROM lex_fts WHERE rowid IN ({_marks(chunk)})",
                chunk,
            ):
                found.append(row[0])
                for term in set(" ".join(row[2:]).split()):
                    gone[term] = gone.get(term, 0) + 1
        if not found:
            return 0
        conn.executemany("DELETE FROM lex_fts WHERE rowid = ?", [(label,) for label in found])
        conn.executemany("DELETE FROM lex_keys WHERE label = ?", [(label,) for label in found])
        conn.executemany("UPDATE lex_terms SET df = df - ? WHERE term = ?", [(n, t) for t, n in gone.items()])
        dead = [
            term
            for chunk in _chunks(list(gone))
            for (term,) in conn.execute(
                f"SELECT term FROM lex_terms WHERE df <= 0 AND term IN ({_marks(chunk)})", chunk
            )
        ]
        conn.executemany("DELETE FROM lex_terms WHERE term = ?", [(t,) for t in dead])
        conn.executemany(
            "DELETE FROM lex_deletes WHERE variant = ? AND term = ?",
            [(variant, term) for term in dead for variant in _typo_keys(term)],
        )
        return len(found)

    def _analyse(self, values: Mapping[str, Any]) -> tuple[list[str], set[str]]:
        """(one string of terms per column, the item's distinct terms)."""
        columns = []
        distinct: set[str] = set()
        for f in self.fields.fields:
            value = values.get(f.name)
            texts = value if isinstance(value, list) else [value] if isinstance(value, str) else []
            found = [t for text in texts for t in analysis.terms(text)]
            distinct.update(found)
            columns.append(" ".join(found))
        return columns, distinct

    def _keys(self, values: Mapping[str, Any]) -> Iterable[tuple[str, str]]:
        for f in self.fields.fields:
            if not f.exact:
                continue
            value = values.get(f.name)
            for text in value if isinstance(value, list) else [value] if isinstance(value, str) else []:
                key = analysis.compact(text)
                if key:
                    yield f.name, (analysis.fold(key) if f.case_insensitive else key)

    # -- search --------------------------------------------------------------------------------

    def plan(
        self, conn: sqlite3.Connection, query: str, options: SearchOptions = SearchOptions()
    ) -> list[QueryTerm]:
        """The query's terms and what each searches for: itself if the vocabulary has it, else its
        closest spellings (fewest edits, then most frequent) and its completions."""
        planned: list[QueryTerm] = []
        seen: set[str] = set()
        for term, surface in analysis.spelled_terms(query):
            if term in seen or len(planned) >= options.max_query_terms:
                continue
            seen.add(term)
            if _existing_terms(conn, [term]) or term.isdigit():
                planned.append(QueryTerm(term, (term,), surface))
                continue
            planned.append(QueryTerm(term, _alternatives(conn, term, surface, options), surface))
        return planned

    def search(
        self,
        conn: sqlite3.Connection,
        query: str,
        k: int,
        *,
        allowed: Allowed | None = None,
        options: SearchOptions = SearchOptions(),
    ) -> list[LexicalHit]:
        """The ``k`` best items for ``query``, of those ``allowed`` lets through.

        Candidates come in tiers, as product search engines find them ("all words first"): items
        holding every query term (each term: itself or its corrections and completions); then,
        while fewer than ``k`` were found, the most frequent term is dropped and the rest are
        asked again. Each tier is an intersection that holds the rarest term, so no query ranks
        more items than its rarest term's documents, however common the other words are (items
        tied with a tier's last one are all kept). The list is ordered by query terms matched,
        then BM25, then id (:mod:`~index_service.topk`'s tie rule), and cut to ``k``; exact
        keyword matches (:attr:`LexicalHit.exact`) are always in it, even past ``k``.
        """
        planned = self.plan(conn, query, options)
        groups = [term.alternatives for term in planned if term.alternatives]
        exact = self._exact(conn, query, options, allowed)
        weights = [0.0] + [float(options.weights.get(name, 1.0)) for name in self.fields.names]
        rank = f"bm25(lex_fts, {', '.join('?' * len(weights))})"
        frequency = _existing_terms(conn, sorted({t for group in groups for t in group}))
        # A word no item holds (a number the catalog does not have) would empty every tier.
        remaining = [group for group in groups if any(frequency.get(t, 0) for t in group)]
        scores: dict[int, float] = {}
        while remaining and len(scores) < k:
            every = " AND ".join("(" + " OR ".join(_quoted(t) for t in group) + ")" for group in remaining)
            found = self._ranked(conn, rank, weights, every, k + len(scores), allowed, options)
            for label, score in found.items():
                scores.setdefault(label, score)
            commonest = max(remaining, key=lambda group: sum(frequency.get(t, 0) for t in group))
            remaining.remove(commonest)
        held = [t for t in sorted(frequency) if frequency[t]]
        if options.fill_any_word and not exact and len(scores) < k and len(held) > 1:
            # Still short (a filter took the rarest word's items): items holding any query
            # word, best first, read at most `max_scan` rows as every tier.
            anything = " OR ".join(_quoted(t) for t in held)
            for label, score in self._ranked(conn, rank, weights, anything, k, allowed, options).items():
                scores.setdefault(label, score)
        missing = sorted(set(exact) - set(scores))
        for label in missing:
            scores[label] = 0.0
        anyone = " OR ".join(_quoted(t) for t in sorted(frequency))
        for chunk in _chunks(missing if frequency else []):
            for label, score in conn.execute(
                f"SELECT rowid, {rank} FROM lex_fts WHERE lex_fts MATCH ? AND +rowid IN ({_marks(chunk)})",
                [*weights, anyone, *chunk],
            ):
                scores[label] = -float(score)
        details = {
            row[0]: row[1:]
            for chunk in _chunks(sorted(scores))
            for row in conn.execute(
                f"SELECT {self._row} FROM lex_fts WHERE rowid IN ({_marks(chunk)})",
                chunk,
            )
        }
        hits = sorted(
            (
                LexicalHit(
                    label,
                    details[label][0],
                    score,
                    _matched(planned, details[label][1:]),
                    exact.get(label, ()),
                )
                for label, score in scores.items()
                if label in details
            ),
            key=lambda h: (-len(h.matched), -h.score, h.id),
        )
        return [h for i, h in enumerate(hits) if i < k or h.exact]

    def _ranked(
        self,
        conn: sqlite3.Connection,
        rank: str,
        weights: list[float],
        expression: str,
        k: int,
        allowed: Allowed | None,
        options: SearchOptions,
    ) -> dict[int, float]:
        """label -> BM25 of the best ``k`` allowed matches of ``expression``, and all tied with the k-th."""
        cursor = conn.execute(
            f"SELECT rowid, {rank} FROM lex_fts WHERE lex_fts MATCH ? ORDER BY {rank}",
            [*weights, expression, *weights],
        )
        kept: list[tuple[int, float]] = []
        scanned = 0
        while scanned < options.max_scan:
            page = cursor.fetchmany(max(k, 64))
            if not page:
                break
            scanned += len(page)
            if allowed is not None:
                mask = allowed(np.asarray([label for label, _ in page], dtype=np.int64))
                page = [row for row, keep in zip(page, mask, strict=True) if keep]
            kept.extend(page)
            if len(kept) > k and kept[-1][1] > kept[k - 1][1]:  # bm25() is negated: larger is worse
                break
        cursor.close()
        if len(kept) > k:
            last = kept[k - 1][1]
            kept = [row for i, row in enumerate(kept) if i < k or row[1] == last]
        return {label: -float(score) for label, score in kept}

    def score_items(
        self,
        conn: sqlite3.Connection,
        query: str,
        labels: Iterable[int],
        options: SearchOptions = SearchOptions(),
    ) -> list[LexicalHit]:
        """BM25, matched terms and exact fields of given items for ``query`` (those matching no term
        are left out): the keyword side's view of the vector side's candidates, so a hybrid search
        fuses both scores of every candidate. Bounded by the number of labels."""
        planned = self.plan(conn, query, options)
        terms = sorted({t for term in planned for t in term.alternatives})
        wanted = sorted({int(label) for label in labels})
        if not terms or not wanted:
            return []
        exact = self._exact(conn, query, options, None)
        # FTS5's bm25() of `"t1" OR "t2" ...`, computed from the rows themselves: a MATCH would
        # walk the whole posting lists of common words (`red`: 10% of the items) to score a few
        # dozen rows. tests/index/test_lexical_bm25.py checks it equals bm25() row for row.
        score = _Bm25(conn, terms, [0.0] + [float(options.weights.get(n, 1.0)) for n in self.fields.names])
        hits = []
        for chunk in _chunks(wanted):
            sizes = dict(
                conn.execute(f"SELECT id, sz FROM lex_fts_docsize WHERE id IN ({_marks(chunk)})", chunk)
            )
            for row in conn.execute(
                f"SELECT {self._row} FROM lex_fts WHERE rowid IN ({_marks(chunk)})", chunk
            ):
                value = score(row[2:], sizes.get(row[0]))
                if value is not None:
                    hits.append(
                        LexicalHit(row[0], row[1], value, _matched(planned, row[2:]), exact.get(row[0], ()))
                    )
        return sorted(hits, key=lambda h: (-len(h.matched), -h.score, h.id))

    def _exact(
        self, conn: sqlite3.Connection, query: str, options: SearchOptions, allowed: Allowed | None
    ) -> dict[int, tuple[str, ...]]:
        """label -> keyword fields whose whole value is a run of the query's words (selective keys only)."""
        folded_fields = {f.name for f in self.fields.fields if f.exact and f.case_insensitive}
        exact_fields = {f.name for f in self.fields.fields if f.exact}
        if not exact_fields:
            return {}
        pieces = [piece for piece in (analysis.compact(p) for p in query.split()) if piece]
        raw: set[str] = set()
        for start in range(min(len(pieces), options.max_query_terms)):
            for end in range(start + 1, min(len(pieces), start + options.max_key_pieces) + 1):
                raw.add("".join(pieces[start:end]))
        folded = {analysis.fold(span) for span in raw}
        found: dict[int, list[str]] = {}
        # One bounded look-up per (key, field): a key held by many items (`red` in a colour
        # field) stops at exact_max_items + 1 rows instead of being counted whole.
        for key in sorted(raw | folded):
            for name in sorted(exact_fields):
                if key not in (folded if name in folded_fields else raw):
                    continue
                held = conn.execute(
                    "SELECT label FROM lex_keys WHERE key = ? AND field = ? LIMIT ?",
                    (key, name, options.exact_max_items + 1),
                ).fetchall()
                if len(held) <= options.exact_max_items:
                    for (label,) in held:
                        found.setdefault(label, []).append(name)
        if allowed is not None and found:
            labels = np.asarray(sorted(found), dtype=np.int64)
            found = {
                int(label): found[int(label)]
                for label, keep in zip(labels, allowed(labels), strict=True)
                if keep
            }
        return {label: tuple(sorted(set(names))) for label, names in found.items()}


def stored_rows(conn: sqlite3.Connection) -> Iterable[Row]:
    """Every item of a store file (its ``items`` table), for :meth:`LexicalIndex.rebuild`."""
    yield from conn.execute("SELECT label, id, metadata FROM items ORDER BY label")


def _alternatives(
    conn: sqlite3.Connection, term: str, surface: str, options: SearchOptions
) -> tuple[str, ...]:
    """Vocabulary terms an unknown query term may mean: the closest spellings of the word as typed
    (else of its term: ``sneakrs`` -> ``sneakr`` -> ``sneaker``), fewest edits then most
    frequent, then its completions."""
    corrections: list[tuple[int, int, str]] = []
    for word in dict.fromkeys((surface, term)):
        corrections = _corrections(conn, word)
        if corrections:
            break
    corrections.sort()
    if corrections:  # only the closest: one edit beats two
        corrections = [c for c in corrections if c[0] == corrections[0][0]]
    completions: list[tuple[int, str]] = []
    if len(surface) >= options.min_prefix:
        completions = sorted(
            (-df, candidate)
            for candidate, df in conn.execute(
                "SELECT term, df FROM lex_terms WHERE term > ? AND term < ? LIMIT 200",
                (surface, surface + "\U0010ffff"),
            )
        )
    chosen = [c[2] for c in corrections] + [c[1] for c in completions]
    return tuple(dict.fromkeys(chosen))[: options.max_expansions]


def _corrections(conn: sqlite3.Connection, word: str) -> list[tuple[int, int, str]]:
    """(edits, -document frequency, term) of vocabulary terms within ``max_edits(word)`` of it.

    Symmetric delete: a term within one edit shares a key with the word (itself or a
    one-deletion, on either side). For two edits the word's two-deletions are looked up too,
    which finds terms longer by two or differing by one edit plus one extra letter in the word,
    not every two-edit term: a bounded, documented approximation.
    """
    limit = analysis.max_edits(word)
    if not limit or not _MIN_FUZZY_TERM - 1 <= len(word) <= _MAX_FUZZY_TERM + limit:
        return []
    keys = {word} | analysis.deletes(word)
    if limit >= 2:
        keys |= {d2 for d1 in analysis.deletes(word) for d2 in analysis.deletes(d1)}
    candidates = {
        candidate
        for chunk in _chunks(sorted(keys))
        for (candidate,) in conn.execute(
            f"SELECT DISTINCT term FROM lex_deletes WHERE variant IN ({_marks(chunk)})", chunk
        )
    }
    frequency = _existing_terms(conn, sorted(candidates))
    found = []
    for candidate in candidates:
        distance = analysis.edit_distance(word, candidate, limit)
        if distance <= limit:
            found.append((distance, -frequency.get(candidate, 0), candidate))
    return found


class _Bm25:
    """FTS5's ``bm25()`` (``fts5_aux.c``: k1 1.2, b 0.75, one phrase per term, a term's
    frequency the sum of the weights of its occurrences, by column: FTS5 re-reads the row for
    them under ``detail=column``) for a row given its columns' text and its
    ``lex_fts_docsize`` record; None if no term is in it.

    The collection statistics are FTS5's own: rows and tokens per column from its averages
    record (``lex_fts_data`` id 1), each term's rows from ``lex_terms`` (the rows holding it).
    """

    K1 = 1.2
    B = 0.75

    def __init__(self, conn: sqlite3.Connection, terms: list[str], weights: list[float]):
        row = conn.execute("SELECT block FROM lex_fts_data WHERE id = 1").fetchone()
        values = _varints(row[0]) if row is not None else [0]
        rows, tokens = values[0], sum(values[1:])
        self.avgdl = tokens / rows if rows else 0.0
        frequency = _existing_terms(conn, terms)
        self.terms = terms
        self.idf = []
        for term in terms:
            hits = frequency.get(term, 0)
            idf = math.log((rows - hits + 0.5) / (hits + 0.5)) if rows else 0.0
            self.idf.append(idf if idf > 0.0 else 1e-6)
        self.weights = weights

    def __call__(self, columns: Sequence[str | None], size: bytes | None) -> float | None:
        held = [Counter(text.split()) if text else Counter() for text in columns]
        freqs = [
            sum(self.weights[c + 1] * terms[term] for c, terms in enumerate(held)) for term in self.terms
        ]
        if not any(term in terms for terms in held for term in self.terms) or not size or not self.avgdl:
            return None
        length = float(sum(_varints(size)))
        score = 0.0
        for idf, freq in zip(self.idf, freqs, strict=True):
            score += idf * (
                (freq * (self.K1 + 1.0)) / (freq + self.K1 * (1 - self.B + self.B * length / self.avgdl))
            )
        return score


def _varints(blob: bytes) -> list[int]:
    """SQLite's varints (FTS5's records): 7 bits a byte, high bit set on all but the last; a
    ninth byte holds 8."""
    out, i = [], 0
    while i < len(blob):
        value = 0
        for n in range(9):
            byte = blob[i + n]
            if n == 8:
                value = (value << 8) | byte
                break
            value = (value << 7) | (byte & 0x7F)
            if byte < 0x80:
                break
        out.append(value)
        i += n + 1
    return out


def _matched(planned: list[QueryTerm], columns: Sequence[str]) -> tuple[str, ...]:
    held = set(" ".join(c for c in columns if c).split())
    out = []
    for term in planned:
        hit = next((alt for alt in term.alternatives if alt in held), None)
        if hit is not None:
            out.append(term.text if hit == term.text else f"{term.typed or term.text}→{hit}")
    return tuple(out)


def _typo_keys(term: str) -> set[str]:
    """The ``lex_deletes`` keys of a vocabulary term: itself and its one-deletions (alphabetic terms)."""
    if not term.isalpha() or not _MIN_FUZZY_TERM <= len(term) <= _MAX_FUZZY_TERM:
        return set()
    return {term} | analysis.deletes(term)


def _existing_terms(conn: sqlite3.Connection, terms: list[str]) -> dict[str, int]:
    return {
        term: df
        for chunk in _chunks(terms)
        for term, df in conn.execute(f"SELECT term, df FROM lex_terms WHERE term IN ({_marks(chunk)})", chunk)
    }


def _quoted(term: str) -> str:
    return '"' + term.replace('"', '""') + '"'


def _chunks(values: list) -> Iterable[list]:
    for start in range(0, len(values), _CHUNK):
        yield values[start : start + _CHUNK]


def _marks(chunk: list) -> str:
    return ",".join("?" * len(chunk))
