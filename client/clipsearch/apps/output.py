"""How commands print results: hit tables and ingest summaries (text or JSON)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from clipsearch.types import Hit, IngestReport


def format_hits(hits: Sequence[Hit]) -> str:
    if not hits:
        return "(no hits)"
    lines = [f"{'rank':>4}  {'score':>7}  {'id':<16} title"]
    for rank, hit in enumerate(hits, start=1):
        title = hit.metadata.get("title", "")
        lines.append(f"{rank:>4}  {hit.score:7.4f}  {hit.id:<16} {title}")
    return "\n".join(lines)


def print_ingest_report(report: IngestReport, *, as_json: bool, where: str = "", **extra: object) -> None:
    """The summary of ``ingest`` and ``bulk-ingest``: a line per failure, or one JSON object."""
    failures = [{"row": f.row, "id": f.id, "reason": f.reason} for f in report.failed]
    if as_json:
        summary = {"ingested": report.ingested, "skipped": report.skipped, "failed": failures}
        print(json.dumps({**summary, "seconds": round(report.seconds, 3), **extra}))
        return
    print(
        f"ingested {report.ingested}, skipped {report.skipped} (unchanged), failed {len(failures)} "
        f"in {report.seconds:.1f}s ({report.rate:.1f} items/s){where}"
    )
    for failure in failures:
        print(f"  row {failure['row']} id={failure['id']!r}: {failure['reason']}")
