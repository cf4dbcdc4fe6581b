"""How commands print results: hit tables and ingest summaries (text or JSON)."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from clipsearch.types import Explanation, Hit, IngestReport

#: Failed rows listed one by one in the text summary; the rest are counted.
SHOWN_FAILURES = 20


def format_hits(hits: Sequence[Hit], *, explain: bool = False) -> str:
    """A table of hits; with ``explain``, each hit's explanation on the line under it."""
    if not hits:
        return "(no hits)"
    lines = [f"{'rank':>4}  {'score':>7}  {'id':<16} title"]
    for rank, hit in enumerate(hits, start=1):
        title = hit.metadata.get("title", "")
        lines.append(f"{rank:>4}  {hit.score:7.4f}  {hit.id:<16} {title}")
        if explain and hit.explanation is not None:
            lines.append(f"{'':>15}{describe(hit.explanation)}")
    return "\n".join(lines)


def describe(explanation: Explanation) -> str:
    """One line: ``vector 0.612 #3 | keyword 7.30 #1 | matched red, dres→dress | exact sku | boosted``
    (a side that did not score the hit reads ``vector -``)."""
    e = explanation
    parts = [
        _side("vector", e.vector_score, e.vector_rank, 3),
        _side("keyword", e.keyword_score, e.keyword_rank, 2),
    ]
    if e.matched_terms:
        parts.append("matched " + ", ".join(e.matched_terms))
    if e.exact_fields:
        parts.append("exact " + ", ".join(e.exact_fields))
    if e.boosted:
        parts.append("boosted")
    return " | ".join(parts)


def _side(name: str, score: float | None, rank: int | None, digits: int) -> str:
    if score is None:
        return f"{name} -"
    return f"{name} {score:.{digits}f}" + (f" #{rank}" if rank is not None else "")


def print_ingest_report(
    report: IngestReport, *, as_json: bool, where: str = "", failed_rows: Path | None = None, **extra: object
) -> None:
    """The summary of ``ingest`` and ``bulk-ingest``: the schema used, counts by kind, the failures."""
    failures = [{"row": f.row, "id": f.id, "kind": f.kind, "reason": f.reason} for f in report.failed]
    if as_json:
        summary = {
            "ingested": report.ingested,
            "updated": report.updated,
            "skipped": report.skipped,
            "deleted": report.deleted,
            "dry_run": report.dry_run,
            "failed": failures,
            "failed_by_kind": report.failures_by_kind(),
            "added_fields": report.added_fields,
            "schema": report.schema.to_dict() if report.schema is not None else None,
            "model": report.model,
        }
        print(json.dumps({**summary, "seconds": round(report.seconds, 3), **extra}))
        return
    if report.added_fields or report.notes:
        print("schema:", file=sys.stderr)
        for note in report.notes:
            print(f"  {note}", file=sys.stderr)
    if report.dry_run:
        print(
            f"dry run, nothing written: would embed {report.ingested}, update {report.updated} "
            f"(metadata only), keep {report.skipped} (unchanged), delete {report.deleted} "
            f"(no longer in the catalog); {len(failures)} rows fail{where}"
        )
    else:
        updated = f", updated {report.updated} (metadata only, not re-encoded)" if report.updated else ""
        deleted = f", deleted {report.deleted} (no longer in the catalog)" if report.deleted else ""
        print(
            f"ingested {report.ingested}{updated}, skipped {report.skipped} (unchanged){deleted}, "
            f"failed {len(failures)} in {report.seconds:.1f}s ({report.rate:.1f} items/s){where}"
        )
    for kind, count in report.failures_by_kind().items():
        print(f"  {count} {kind}")
    for failure in failures[:SHOWN_FAILURES]:
        print(f"  row {failure['row']} id={failure['id']!r}: {failure['reason']}")
    if len(failures) > SHOWN_FAILURES:
        print(f"  ... and {len(failures) - SHOWN_FAILURES} more")
    if failed_rows is not None and failures:
        print(f"  the failed rows are in {failed_rows}: fix them and ingest that file")
