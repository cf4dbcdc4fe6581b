"""Runs in the tantivy venv (``var/peers/tantivy-venv``): builds and queries a tantivy index.

Reads ``{"docs": path of JSON lines, "queries": [...], "k": n, "batch": n, "dir": path}`` on
stdin, prints one JSON object: build seconds, index bytes, per-query seconds and top-k ids.
Called by ``benchmarks/lexical_engines.py``; the same documents and queries go to SQLite FTS5.
"""

import json
import os
import sys
import time

import tantivy

FIELDS = ("title", "description", "brand", "category", "color", "pattern", "sku")


def main() -> None:
    job = json.load(sys.stdin)
    builder = tantivy.SchemaBuilder()
    builder.add_text_field("id", stored=True, tokenizer_name="raw")
    for name in FIELDS:
        builder.add_text_field(name, tokenizer_name="en_stem")
    schema = builder.build()
    index = tantivy.Index(schema, path=job["dir"])
    writer = index.writer(heap_size=64_000_000, num_threads=1)
    started = time.perf_counter()
    pending = 0
    with open(job["docs"], encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            writer.add_document(
                tantivy.Document(**{k: [v] for k, v in row.items() if k in FIELDS or k == "id"})
            )
            pending += 1
            if pending == job["batch"]:  # one durable commit per ingest batch, as the store does
                writer.commit()
                pending = 0
    writer.commit()
    writer.wait_merging_threads()
    build_s = time.perf_counter() - started
    index.reload()
    searcher = index.searcher()
    fuzzy = {name: (True, 1, True) for name in FIELDS if name != "sku"}
    times, results = [], []
    for query in job["queries"]:
        t0 = time.perf_counter()
        parsed = index.parse_query_lenient(query, list(FIELDS), fuzzy_fields=fuzzy)[0]
        hits = searcher.search(parsed, job["k"]).hits
        ids = [searcher.doc(address)["id"][0] for _, address in hits]
        times.append(time.perf_counter() - t0)
        results.append(ids)
    size = sum(os.path.getsize(os.path.join(job["dir"], f)) for f in os.listdir(job["dir"]))
    print(json.dumps({"build_s": build_s, "bytes": size, "times": times, "results": results}))


if __name__ == "__main__":
    main()
