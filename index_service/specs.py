"""The index specs a collection may declare: a small grammar over FAISS factory strings, bounded.

FAISS builds whatever its factory string says and allocates lazily, so ``HNSW1000000000``
was accepted at create and failed (``std::bad_alloc``) at the first write, and at every
start after it; ``IVF1000000000,Flat`` failed at create with an allocation error. A spec
is therefore checked against this grammar, every number within its bound, before FAISS
sees it (``IndexKind.describe`` calls :func:`check`; FAISS then validates the rest, e.g.
that a PQ's sub-quantizers divide the dimension)::

    spec      := [transform ","]... main ["," rerank]  (at most two transforms)
    rerank    := "Rerank" N     (a compressed index re-scores N x k candidates exactly)
    transform := "PCA" ["R"|"W"|"WR"] D | "OPQ" M ["_" D] | "L2norm"
    main      := "Flat" | "HNSW" M [("_"|",") storage] | "IVF" NLIST ["_HNSW" M] "," storage
               | pq | sq
    storage   := "Flat" | pq | sq
    pq        := "PQ" M ["x" NBITS] ["np"]
    sq        := "SQ4" | "SQ6" | "SQ8" | "SQfp16"

Bounds (docs/index.md, docs/reliability.md): HNSW links M in [2, 128]; IVF lists in
[1, 65536]; PQ sub-quantizers M in [1, the dimension] with NBITS in [1, 12]; PCA/OPQ
output D in [1, the collection's dimension]; Rerank N in [1, 100] (``Rerank`` is ours,
not FAISS's: :func:`split` takes it off before FAISS sees the spec). Standard library only.
"""

from __future__ import annotations

import re

from clipsearch.errors import InvalidArgumentError

FIELD = "config.index_spec"
MAX_HNSW_M = 128
MAX_NLIST = 65_536
MAX_PQ_NBITS = 12
MAX_TRANSFORMS = 2
MAX_SPEC_CHARS = 128
MAX_RERANK = 100
_RERANK = re.compile(r"\s*,\s*Rerank(?P<n>\d+)\s*$")


def split(spec: str) -> tuple[str, int]:
    """(the FAISS factory string, the spec's re-rank oversampling; 0 where it names none)."""
    found = _RERANK.search(spec)
    if found is None:
        return spec, 0
    return spec[: found.start()], int(found["n"]) if len(found["n"]) <= 12 else 10**12


_TRANSFORM = re.compile(
    r"(?:PCA(?:R|W|WR)?(?P<pca>\d+)|OPQ(?P<opq>\d+)(?:_(?P<opq_d>\d+))?|(?P<norm>L2norm))"
)
_STORAGE = re.compile(r"Flat|PQ(?P<pq>\d+)(?:x(?P<nbits>\d+))?(?:np)?|SQ(?:4|6|8|fp16)")
_MAIN = re.compile(
    r"HNSW(?P<hnsw>\d+)(?:[_,](?P<storage>.+))?"
    r"|IVF(?P<nlist>\d+)(?:_HNSW(?P<quantizer>\d+))?,(?P<lists>.+)"
    r"|(?P<alone>.+)"
)


def check(spec: str, dimension: int) -> None:
    """INVALID_ARGUMENT naming ``config.index_spec`` unless ``spec`` is in the grammar, within bounds."""
    if len(spec) > MAX_SPEC_CHARS:
        _refuse(spec[:MAX_SPEC_CHARS] + "...", f"at most {MAX_SPEC_CHARS} characters")
    whole = spec
    spec, rerank = split(spec)
    if spec != whole and not 1 <= rerank <= MAX_RERANK:
        _refuse(whole, f"Rerank oversampling must be in [1, {MAX_RERANK}], got {rerank}")
    parts = [part.strip() for part in spec.split(",")]
    # The main part may itself hold one comma (IVF..,storage / HNSW..,storage): find where it starts.
    start = next((i for i, part in enumerate(parts) if not _TRANSFORM.fullmatch(part)), len(parts))
    transforms, main = parts[:start], ",".join(parts[start:])
    if len(transforms) > MAX_TRANSFORMS:
        _refuse(spec, f"at most {MAX_TRANSFORMS} transforms (PCA, OPQ, L2norm) before the index")
    width = dimension
    for part in transforms:
        found = _TRANSFORM.fullmatch(part)
        assert found is not None
        if found["pca"] is not None:
            width = _bounded(spec, "PCA output dimension", found["pca"], 1, dimension)
        elif found["opq"] is not None:
            out = (
                _bounded(spec, "OPQ output dimension", found["opq_d"], 1, dimension)
                if found["opq_d"]
                else width
            )
            _bounded(spec, "OPQ sub-quantizers", found["opq"], 1, out)
            width = out
    matched = _MAIN.fullmatch(main)
    storage = None
    if matched is not None:
        text = matched["storage"] or matched["lists"] or matched["alone"] or "Flat"
        storage = _STORAGE.fullmatch(text)
    if matched is None or storage is None:
        _refuse(
            spec,
            "expected Flat, HNSW<M>[,Flat|,PQ<m>|,SQ8], IVF<lists>,Flat|PQ<m>[x<bits>]|SQ8, PQ<m> or SQ8, "
            "optionally after PCA<d>, OPQ<m>[_<d>] or L2norm (docs/index.md)",
        )
    assert matched is not None and storage is not None
    for group in ("hnsw", "quantizer"):
        if matched[group] is not None:
            _bounded(spec, "HNSW links per vector (M)", matched[group], 2, MAX_HNSW_M)
    if matched["nlist"] is not None:
        _bounded(spec, "IVF lists", matched["nlist"], 1, MAX_NLIST)
    if storage["pq"] is not None:
        _bounded(spec, "PQ sub-quantizers", storage["pq"], 1, width)
    if storage["nbits"] is not None:
        _bounded(spec, "PQ bits per code", storage["nbits"], 1, MAX_PQ_NBITS)


def _bounded(spec: str, what: str, digits: str, low: int, high: int) -> int:
    value = int(digits) if len(digits) <= 12 else 10**12  # int() refuses 4300+ digits; any such is out

    if not low <= value <= high:
        _refuse(spec, f"{what} must be in [{low}, {high}], got {value}")
    return value


def _refuse(spec: str, why: str) -> None:
    raise InvalidArgumentError(f"{FIELD}: {spec!r}: {why}", field=FIELD)
