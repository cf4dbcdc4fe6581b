"""FAISS index kinds: building an index from a factory string, and what it can do.

Ids: our labels are int64s. IVF indexes store them natively; every other kind is wrapped in
``IndexIDMap``. Trainable kinds (IVF, PQ, SQ) start as an exact ``Flat`` staging index and
are trained once a shard holds :attr:`IndexKind.train_threshold` vectors (the training rule
in docs/index.md). Kinds that cannot remove ids (HNSW, NSG) keep deleted vectors in the
graph, masked at search time, until a rebuild.
"""

from __future__ import annotations

from dataclasses import dataclass

import faiss
import numpy as np

from clipsearch.errors import InvalidArgumentError
from index_service import specs
from index_service.config import Metric

#: FAISS asks for at least this many training points per centroid.
POINTS_PER_CENTROID = 39
MIN_TRAIN = 1000
#: Training uses at most this many points per centroid (a random sample of the shard): k-means
#: quality has levelled off well before, and training time grows with the sample.
TRAIN_POINTS_PER_CENTROID = 64
#: HNSW's search breadth. 128, not 64: at 100k clustered 512-d vectors HNSW32 recalls 0.984 of
#: the top 10 at 64 (1.2 % of queries below 0.8) and 0.995 at 128 (0.05 %), for 0.25 instead of
#: 0.12 ms a query; indexes saved at 64 are searched at this (index_service/rerank.py:traits_of).
DEFAULT_EF_SEARCH = 128
DEFAULT_NPROBE = 16


@dataclass(frozen=True)
class IndexKind:
    spec: str
    dimension: int
    metric: Metric
    trainable: bool
    removable: bool
    native_ids: bool
    #: Vectors a shard needs before a trainable kind is trained.
    train_threshold: int
    #: Candidates per hit a compressed index re-scores (the spec's ``Rerank<N>``; 0: the default).
    rerank: int = 0
    #: Vectors a training uses at most (a seeded random sample of the shard's).
    train_size: int = 0

    @property
    def factory(self) -> str:
        """The FAISS factory string (the spec without ``Rerank<N>``)."""
        return specs.split(self.spec)[0]

    @property
    def faiss_metric(self) -> int:
        return faiss.METRIC_L2 if self.metric == Metric.L2 else faiss.METRIC_INNER_PRODUCT

    @property
    def exact(self) -> bool:
        return self.factory.replace(" ", "") == "Flat"

    @classmethod
    def describe(cls, spec: str, dimension: int, metric: Metric) -> IndexKind:
        """Validates ``spec`` (its grammar, then by building it); errors name ``config.index_spec``."""
        if "IDMap" in spec:
            raise InvalidArgumentError(
                "config.index_spec: leave IDMap out, the service maps ids itself", field="config.index_spec"
            )
        specs.check(spec, dimension)  # the grammar and its bounds, before FAISS allocates anything
        fmetric = faiss.METRIC_L2 if metric == Metric.L2 else faiss.METRIC_INNER_PRODUCT
        try:
            index = faiss.index_factory(dimension, specs.split(spec)[0], fmetric)
        except RuntimeError as exc:
            message = str(exc).strip().splitlines()[-1] if str(exc).strip() else "invalid"
            raise InvalidArgumentError(
                f"config.index_spec: FAISS cannot build {spec!r} for dimension {dimension}: {message}",
                field="config.index_spec",
            ) from None
        ivf = faiss.try_extract_index_ivf(index)
        if ivf is not None and ivf.nlist < 1:
            raise InvalidArgumentError(
                "config.index_spec: IVF needs at least one list", field="config.index_spec"
            )
        trainable = not index.is_trained
        threshold = train_size = 0
        if trainable:
            centroids = ivf.nlist if ivf is not None else 1
            pq = _product_quantizer(index)
            if pq is not None:
                centroids = max(centroids, pq.ksub)
            threshold = max(MIN_TRAIN, POINTS_PER_CENTROID * centroids)
            train_size = max(threshold, TRAIN_POINTS_PER_CENTROID * centroids)
        native = ivf is not None
        probe = index if native else faiss.IndexIDMap(index)
        try:
            probe.remove_ids(faiss.IDSelectorBatch(np.zeros(0, dtype=np.int64)))
            removable = True
        except RuntimeError:
            removable = False
        return cls(
            spec, dimension, metric, trainable, removable, native, threshold, specs.split(spec)[1], train_size
        )

    def new_index(self) -> faiss.Index:
        """An empty index ready for ``add_with_ids``: the staging Flat for untrained kinds."""
        if self.trainable:
            return faiss.IndexIDMap(faiss.IndexFlat(self.dimension, self.faiss_metric))
        return self._target()

    def _target(self) -> faiss.Index:
        index = faiss.index_factory(self.dimension, self.factory, self.faiss_metric)
        hnsw = _hnsw(index)
        if hnsw is not None:
            hnsw.hnsw.efSearch = DEFAULT_EF_SEARCH
        ivf = faiss.try_extract_index_ivf(index)
        if ivf is not None:
            ivf.nprobe = min(ivf.nlist, DEFAULT_NPROBE)
        return index if self.native_ids else faiss.IndexIDMap(index)

    def build(self, labels: np.ndarray, vectors: np.ndarray) -> faiss.Index:
        """A final (trained) index holding ``vectors`` under ``labels``."""
        index = self._target()
        if self.trainable:
            sample = vectors
            if len(vectors) > self.train_size > 0:
                rng = np.random.default_rng(len(vectors))
                sample = vectors[np.sort(rng.choice(len(vectors), self.train_size, replace=False))]
            index.train(sample)
        if len(labels):
            index.add_with_ids(vectors, labels)
        return index


def is_staging(index: faiss.Index, kind: IndexKind) -> bool:
    return (
        kind.trainable
        and isinstance(index, faiss.IndexIDMap)
        and isinstance(faiss.downcast_index(index.index), faiss.IndexFlat)
    )


def index_labels(index: faiss.Index) -> np.ndarray:
    """Every label stored in ``index`` (sorted)."""
    if isinstance(index, faiss.IndexIDMap):
        return np.sort(faiss.vector_to_array(index.id_map).astype(np.int64))
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is None:
        raise TypeError(f"cannot list the ids of {type(index).__name__}")
    lists = ivf.invlists
    if lists is None:
        raise TypeError(f"{type(ivf).__name__} has no inverted lists")
    parts = [
        faiss.rev_swig_ptr(lists.get_ids(i), lists.list_size(i)).copy()
        for i in range(ivf.nlist)
        if lists.list_size(i)
    ]
    return np.sort(np.concatenate(parts).astype(np.int64)) if parts else np.zeros(0, dtype=np.int64)


def search_parameters(
    index: faiss.Index, selector: faiss.IDSelector | None, ef_search: int, nprobe: int
) -> faiss.SearchParameters | None:
    """Per-call parameters (a fresh object each call: IndexIDMap rewrites ``sel`` in place)."""
    inner = faiss.downcast_index(index.index) if isinstance(index, faiss.IndexIDMap) else index
    params: faiss.SearchParameters
    if isinstance(inner, faiss.IndexHNSW):
        # SearchParametersHNSW exists in the SWIG module but is missing from faiss's stubs.
        hnsw_params = faiss.SearchParametersHNSW()  # type: ignore[attr-defined]
        hnsw_params.efSearch = ef_search or inner.hnsw.efSearch
        params = hnsw_params
    elif isinstance(inner, faiss.IndexIVF):
        params = faiss.SearchParametersIVF()
        params.nprobe = min(nprobe or inner.nprobe, inner.nlist)
    elif (
        isinstance(inner, faiss.IndexPreTransform) and (ivf := faiss.try_extract_index_ivf(inner)) is not None
    ):
        sub = faiss.SearchParametersIVF()
        sub.nprobe = min(nprobe or ivf.nprobe, ivf.nlist)
        sub.sel = selector
        params = faiss.SearchParametersPreTransform()
        params.index_params = sub
    elif selector is None:
        return None
    else:
        params = faiss.SearchParameters()
    params.sel = selector
    return params


def bitmap_selector(labels: np.ndarray) -> tuple[faiss.IDSelector, np.ndarray]:
    """An ``IDSelectorBitmap`` of ``labels`` and the buffer it points into (keep both alive)."""
    top = int(labels.max()) + 1 if len(labels) else 1
    bits = np.zeros(top, dtype=bool)
    bits[labels] = True
    bitmap = np.packbits(bits, bitorder="little")
    return faiss.IDSelectorBitmap(len(bitmap), faiss.swig_ptr(bitmap)), bitmap


def _hnsw(index: faiss.Index) -> faiss.IndexHNSW | None:
    index = faiss.downcast_index(index)
    return index if isinstance(index, faiss.IndexHNSW) else None


def _product_quantizer(index: faiss.Index) -> faiss.ProductQuantizer | None:
    index = faiss.downcast_index(index)
    if isinstance(index, faiss.IndexPreTransform):
        index = faiss.downcast_index(index.index)
    if isinstance(index, (faiss.IndexIVFPQ, faiss.IndexPQ)):
        return index.pq
    return None
