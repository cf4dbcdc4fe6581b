"""One side's load generator, kept alive across rounds: ``python _peer_worker.py TARGET CONFIG_JSON``.

Runs in the side's own venv (the project's, PyTriton's or Milvus Lite's), so each side is
called through its own client library; the loop itself is ``_loadgen.closed_loop`` for all.
Reads one JSON command a line on stdin and answers one line starting with ``@@peer `` on
stdout (libraries may print other lines):

    {"op": "run", "workload": {...}, "callers": 32, "seconds": 5, "warmup_s": 1}
    {"op": "sample", "workload": {...}, "count": 8}      first answers, for cross-checks
    {"op": "setup"}                                      Milvus: create, insert, index, load
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
from _loadgen import closed_loop

K = 10
EF_SEARCH = 64
FILTER_CATEGORY = "cat3"  # items have cat{i % 10}: one value in ten


class EncoderInputs:
    """Texts and JPEGs the harness wrote (``inputs.json``); call ``n`` sends item ``n % len``."""

    def __init__(self, config: dict):
        inputs = json.loads(Path(config["inputs"]).read_text())
        self.texts = inputs["texts"]
        self.images = [Path(path).read_bytes() for path in inputs["images"]]

    def items(self, workload: dict) -> list:
        return self.texts if workload["kind"] == "texts" else self.images


class ClipsearchEncoder(EncoderInputs):
    """Our SDK: one client (one channel) shared by every caller thread, as an application would
    use it, or one per thread (``"channels": "per-thread"``, as PyTriton's clients must be)."""

    def __init__(self, config: dict):
        super().__init__(config)
        self.address, self.per_thread = config["address"], config.get("channels") == "per-thread"
        self.clients: dict = {}

    def client(self, thread: int):
        from clipsearch import EncoderClient

        key = thread if self.per_thread else 0
        if key not in self.clients:
            self.clients[key] = EncoderClient(self.address, timeout_s=600)
        return self.clients[key]

    def make(self, workload: dict):
        items, texts = self.items(workload), workload["kind"] == "texts"

        def per_thread(thread: int):
            client = self.client(thread)
            embed = client.embed_texts if texts else client.embed_images
            return lambda n: embed([items[n % len(items)]])

        return per_thread


class PyTritonEncoder(EncoderInputs):
    """pytriton's ModelClient over gRPC; one per caller thread (it is not thread-safe)."""

    def __init__(self, config: dict):
        super().__init__(config)
        self.url = config["url"]
        self.clients: dict = {}  # (model, thread) -> ModelClient, kept across rounds like connections

    def make(self, workload: dict):
        from pytriton.client import ModelClient

        name = "text" if workload["kind"] == "texts" else "image"
        raw = [t.encode() if isinstance(t, str) else t for t in self.items(workload)]
        arrays = [np.array([item], dtype=object) for item in raw]

        def per_thread(thread: int):
            if (name, thread) not in self.clients:
                self.clients[name, thread] = ModelClient(
                    self.url, name, init_timeout_s=120, inference_timeout_s=600
                )
            client = self.clients[name, thread]
            return lambda n: client.infer_sample(**{name: arrays[n % len(arrays)]})["embedding"]

        return per_thread


class IndexQueries:
    def __init__(self, config: dict):
        self.queries = np.load(config["queries"])


class ClipsearchIndex(IndexQueries):
    def __init__(self, config: dict):
        super().__init__(config)
        from clipsearch import IndexClient

        self.client = IndexClient(config["address"], timeout_s=600)

    def make(self, workload: dict):
        extra = {"filter": {"cat": FILTER_CATEGORY}} if workload["filter"] else {}
        queries, collection = self.queries, workload["collection"]

        def call(n: int):
            hits = self.client.search(
                collection, queries[n % len(queries)], k=K, ef_search=EF_SEARCH, **extra
            )
            return [int(hit.id[1:]) for hit in hits]

        return lambda _thread: call


class InProcessFaiss(IndexQueries):
    """The server's own indexes, read from its snapshot files, searched in this process."""

    def __init__(self, config: dict):
        super().__init__(config)
        import faiss

        self.faiss = faiss
        faiss.omp_set_num_threads(1)
        self.indexes = {
            name: faiss.deserialize_index(np.fromfile(path, dtype=np.uint8, offset=config["header_bytes"]))
            for name, path in config["snapshots"].items()
        }
        labels = np.arange(config["n"], dtype=np.int64)
        self.filtered = labels[labels % 10 == int(FILTER_CATEGORY[3:])]
        # The server's own selector, built once here: the in-process side pays neither the
        # filter's evaluation nor the selector's making.
        from index_service.kinds import bitmap_selector

        self.selector, self.bitmap = bitmap_selector(self.filtered)

    def make(self, workload: dict):
        faiss, index, queries = self.faiss, self.indexes[workload["collection"]], self.queries

        def params():  # fresh each call, as the server does (IndexIDMap rewrites `sel` in place)
            inner = faiss.downcast_index(index.index) if isinstance(index, faiss.IndexIDMap) else index
            if isinstance(inner, faiss.IndexHNSW):
                p = faiss.SearchParametersHNSW()
                p.efSearch = EF_SEARCH
            elif workload["filter"]:
                p = faiss.SearchParameters()
            else:
                return None
            if workload["filter"]:
                p.sel = self.selector
            return p

        def call(n: int):
            _, labels = index.search(queries[n % len(queries)][None, :], K, params=params())
            return [int(label) for label in labels[0] if label >= 0]

        def per_thread(_thread: int):
            # OpenMP's thread count is per calling thread: set in the main thread only, every new
            # caller thread would fork a team of cpu_count() threads per search (as our server's
            # search pools set it in their initializer). On 2 busy cores those teams spin-wait,
            # and rounds came out bimodal: 0.3 or 4.7 CPU ms a query.
            faiss.omp_set_num_threads(1)
            return call

        return per_thread


class MilvusLite(IndexQueries):
    """pymilvus's MilvusClient; a ``.db`` URI runs Milvus Lite's server inside this process."""

    def __init__(self, config: dict):
        super().__init__(config)
        from pymilvus import MilvusClient

        self.config = config
        self.client = MilvusClient(config["uri"])

    def setup(self) -> dict:
        from pymilvus import DataType, MilvusClient

        vectors = np.load(self.config["vectors"])
        timings = {}
        for name, index_type, params in (
            ("hnsw", "HNSW", {"M": 32, "efConstruction": 40}),  # faiss's HNSW32 defaults, as ours
            ("flat", "FLAT", {}),
        ):
            started = time.perf_counter()
            schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
            schema.add_field("id", DataType.INT64, is_primary=True)
            schema.add_field("vector", DataType.FLOAT_VECTOR, dim=vectors.shape[1])
            schema.add_field("cat", DataType.VARCHAR, max_length=16)
            index_params = self.client.prepare_index_params()
            index_params.add_index("vector", index_type=index_type, metric_type="COSINE", params=params)
            # Index after the data, as Milvus documents it: with index_params given at creation,
            # Milvus Lite 3.2.2 left 100k rows (2 segments) without any vector index, while
            # describe_index said "Finished", 100,000 indexed rows; every search was then a
            # brute-force pass built per query (~0.9 s each instead of ~50 ms).
            self.client.create_collection(name, schema=schema)
            created = time.perf_counter()
            for s in range(0, len(vectors), 1000):
                rows = range(s, min(s + 1000, len(vectors)))
                self.client.insert(
                    name, [{"id": i, "vector": vectors[i], "cat": f"cat{i % 10}"} for i in rows]
                )
            inserted = time.perf_counter()
            self.client.flush(name)
            flushed = time.perf_counter()
            self.client.release_collection(name)
            self.client.create_index(name, index_params)
            self.client.load_collection(name)
            index = self.client.describe_index(name, "vector")
            timings[name] = {
                "seconds": round(time.perf_counter() - started, 1),
                "insert_s": round(inserted - created, 1),
                "flush_s": round(flushed - inserted, 1),
                "index_and_load_s": round(time.perf_counter() - flushed, 1),
                **{key: index.get(key) for key in ("index_type", "indexed_rows", "state")},
            }
        return timings

    def make(self, workload: dict):
        extra = {"filter": f'cat == "{FILTER_CATEGORY}"'} if workload["filter"] else {}
        queries, collection = self.queries, workload["collection"]
        search_params = {"metric_type": "COSINE", "params": {"ef": EF_SEARCH}}

        def call(n: int):
            (hits,) = self.client.search(
                collection,
                data=[queries[n % len(queries)].tolist()],
                limit=K,
                search_params=search_params,
                **extra,
            )
            return [int(hit["id"]) for hit in hits]

        return lambda _thread: call


TARGETS = {
    "clipsearch-encoder": ClipsearchEncoder,
    "pytriton": PyTritonEncoder,
    "clipsearch-index": ClipsearchIndex,
    "faiss": InProcessFaiss,
    "milvus": MilvusLite,
}


def answer(command: dict, target) -> object:
    if command["op"] == "run":
        return closed_loop(
            target.make(command["workload"]), command["callers"], command["seconds"], command["warmup_s"]
        )
    if command["op"] == "sample":
        call = target.make(command["workload"])(0)
        return [np.asarray(call(n)).tolist() for n in range(command["count"])]
    if command["op"] == "setup":
        return target.setup()
    raise ValueError(f"unknown op {command['op']!r}")


def main() -> None:
    target = TARGETS[sys.argv[1]](json.loads(sys.argv[2]))
    print("@@peer " + json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        command = json.loads(line)
        if command["op"] == "quit":
            break
        print("@@peer " + json.dumps(answer(command, target), default=str), flush=True)


if __name__ == "__main__":
    main()
