"""One definition of the ingest options reaches the pipeline from every entry point."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import pytest

import clipsearch.search_client
from clipsearch import SearchClient, aio
from clipsearch.apps.cli import main
from clipsearch.ingest_options import IngestOptions
from clipsearch.types import IngestReport

pytestmark = pytest.mark.unit


#: Options that are neither switches nor bounded numbers: a value other than the default, as text.
TEXT_VALUES = {
    "schema": '{"price": {"type": "float", "currency": "USD"}}',
    "image_root": "/srv/images",
    "list_separator": ";",
    "text_vector": "title,description",
}


def _changed_options() -> tuple[IngestOptions, list[str]]:
    """Every field set away from its default, and the same as command-line flags.

    A new option without a bounded parser needs an entry in TEXT_VALUES: this test must cover it.
    """
    values, argv = {}, []
    for field, declared in IngestOptions.declared_options():
        flag = IngestOptions.flag_of(field.name)
        if declared.switch:
            values[field.name] = not field.default
            argv.append(flag)
        elif hasattr(declared.parse, "high"):
            bounds = declared.parse
            value = bounds.high if field.default != bounds.high else bounds.low  # type: ignore[attr-defined]
            values[field.name] = type(field.default)(value)
            argv += [flag, str(values[field.name])]
        else:
            text = TEXT_VALUES[field.name]
            values[field.name] = declared.parse(text)
            argv += [flag, text]
    return IngestOptions(**values), argv


@pytest.fixture
def recorded(monkeypatch, tmp_path: Path) -> list[IngestOptions]:
    """Runs no pipeline: records the options each ingest would run with."""
    seen: list[IngestOptions] = []

    def fake_ingest_catalog(encoder, index, catalog, *, collection, options, on_progress):
        seen.append(options)
        return IngestReport()

    monkeypatch.setattr(clipsearch.search_client, "ingest_catalog", fake_ingest_catalog)
    monkeypatch.setattr(SearchClient, "create_collection", lambda self, *a, **k: None)
    return seen


def test_every_option_reaches_the_pipeline(recorded, tmp_path: Path, capsys) -> None:
    wanted, argv = _changed_options()
    assert wanted != IngestOptions()
    catalog = tmp_path / "catalog.csv"
    catalog.write_text("id,image\n")
    with SearchClient("127.0.0.1:1", "127.0.0.1:2") as client:
        client.ingest(catalog, collection="c", options=wanted)
        client.ingest(
            catalog, collection="c", **{f.name: getattr(wanted, f.name) for f in dataclasses.fields(wanted)}
        )

    async def through_aio() -> None:
        async with aio.SearchClient("127.0.0.1:1", "127.0.0.1:2") as client:
            await client.ingest(catalog, collection="c", options=wanted)
            await client.ingest(
                catalog,
                collection="c",
                **{f.name: getattr(wanted, f.name) for f in dataclasses.fields(wanted)},
            )

    asyncio.run(through_aio())
    assert main(["ingest", str(catalog), "--collection", "c", "--json", *argv]) == 0
    assert recorded == [wanted] * 5


def test_unknown_and_out_of_range_options_are_refused() -> None:
    with SearchClient("127.0.0.1:1", "127.0.0.1:2") as client:
        with pytest.raises(TypeError, match="unknown ingest option 'batchsize'"):
            client.ingest("x.csv", collection="c", batchsize=3)
        with pytest.raises(ValueError, match="--batch-size: must be in"):
            client.ingest("x.csv", collection="c", batch_size=0)
