"""The everyday verbs over real gRPC: count, scroll, metadata updates, deletes by filter and
group, grouped search, aliases, backup and restore, with their errors."""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace

import numpy as np
import pytest
from harness import ServerThread

from clipsearch import IndexClient
from clipsearch.errors import (
    AlreadyExistsError,
    ClipsearchError,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    StatusCode,
)
from clipsearch.schema import Field, FieldType, Schema

pytestmark = pytest.mark.functional

D = 8
SCHEMA = Schema(
    (
        Field("category", FieldType.KEYWORD, case_insensitive=True),
        Field("price", FieldType.FLOAT, currency="EUR"),
        Field("tags", FieldType.KEYWORDS),
        Field("title", FieldType.TEXT),
    )
)


def _vectors(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, D)).astype(np.float32)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from index_service.server import create_server
    from index_service.settings import IndexSettings

    settings = IndexSettings(port=0, data_dir=tmp_path_factory.mktemp("lifecycle"))
    with ServerThread(lambda: create_server(settings), name="index") as thread:
        yield thread


@pytest.fixture
def client(server):
    with IndexClient(server.address) as client:
        yield client


@pytest.fixture
def shop(client, request):
    """A fresh collection of 60 items: 20 products with 3 images each (ids p<n>#<i>)."""
    name = request.node.name.replace("[", "_").replace("]", "")[:60]
    client.create_collection(name, D, num_shards=3, schema=SCHEMA)
    ids = [f"p{n:02d}#{i}" for n in range(20) for i in range(3)]
    groups = [item_id.split("#")[0] for item_id in ids]
    metadata = [
        {
            "category": "dress" if n % 2 else "hat",
            "price": 10.0 + n,
            "tags": ["summer"] if n % 4 == 0 else ["winter", "wool"],
            "title": f"product {n}",
        }
        for n in range(20)
        for _ in range(3)
    ]
    client.upsert(name, ids, _vectors(60, 1), metadata, groups=groups)
    yield name
    for alias in client.list_aliases():
        if alias.collection == name:
            client.delete_alias(alias.alias)
    client.drop_collection(name, missing_ok=True)


def test_count_with_and_without_filters(client, shop) -> None:
    assert client.count(shop) == 60
    assert client.count(shop, filter={"category": "DRESS"}) == 30  # case-insensitive field
    assert client.count(shop, filter={"price": {"lt": 15}}) == 15
    assert client.count(shop, filter={"tags": {"contains_all": ["winter", "wool"]}}) == 45
    with pytest.raises(InvalidArgumentError) as unknown:
        client.count(shop, filter={"colour": "red"})
    assert unknown.value.field.startswith("filter") and "colour" in unknown.value.message
    with pytest.raises(NotFoundError):
        client.count("no_such_collection")


def test_scroll_pages_every_item_once_while_writes_go_on(client, shop) -> None:
    seen: list[str] = []
    page = client.scroll(shop, limit=7)
    deleted_ahead, added_behind = "p19#2", "p00#0a"
    while True:
        seen += [item.id for item in page.items]
        if len(seen) == 14:  # writes between pages: one ahead of the cursor goes, one behind comes
            client.delete(shop, [deleted_ahead])
            client.upsert(shop, [added_behind], _vectors(1, 9), [{"category": "hat", "price": 1.0}])
        if not page.next_cursor:
            break
        page = client.scroll(shop, limit=7, cursor=page.next_cursor)
    expected = sorted(
        f"p{n:02d}#{i}" for n in range(20) for i in range(3) if f"p{n:02d}#{i}" != deleted_ahead
    )
    assert seen == expected, "each item present throughout comes exactly once, in id order"


def test_scroll_with_filter_vectors_and_iteration(client, shop) -> None:
    items = list(client.iter_items(shop, filter={"category": "hat"}, page_size=4, include_vectors=True))
    assert len(items) == 30 and all(item.metadata["category"] == "hat" for item in items)
    assert all(item.vector is not None and item.vector.shape == (D,) for item in items)
    assert all(item.group == item.id.split("#")[0] for item in items)
    assert [i.id for i in items] == sorted(i.id for i in items)


def test_scroll_refuses_foreign_and_forged_cursors(client, shop) -> None:
    client.create_collection("other_scroll", D, exist_ok=True)
    client.upsert("other_scroll", ["a", "b"], _vectors(2, 2))
    foreign = client.scroll("other_scroll", limit=1).next_cursor
    assert foreign
    with pytest.raises(InvalidArgumentError) as error:
        client.scroll(shop, cursor=foreign)
    assert error.value.field == "cursor" and "other_scroll" in error.value.message
    for forged in ("garbage", "e30", "!!!!"):
        with pytest.raises(InvalidArgumentError) as bad:
            client.scroll(shop, cursor=forged)
        assert bad.value.field == "cursor"
    for limit in (-1, 10_001):
        with pytest.raises(InvalidArgumentError) as bad_limit:
            client.scroll(shop, limit=limit)
        assert bad_limit.value.field == "limit"
    client.drop_collection("other_scroll")


def test_update_metadata_sets_and_unsets_without_touching_vectors(client, shop) -> None:
    before = {i.id: i for i in client.get(shop, ["p01#0", "p01#1"], include_vectors=True)}
    assert client.update_metadata(shop, ["p01#0"], set={"price": 99.5}, unset=["tags"]) == 1
    after = client.get(shop, ["p01#0"], include_vectors=True)[0]
    assert after.metadata["price"] == 99.5 and "tags" not in after.metadata
    np.testing.assert_array_equal(after.vector, before["p01#0"].vector)
    assert client.count(shop, filter={"price": {"gte": 99}}) == 1, "filters see the new value"
    # By product (group) and by filter; a dry run changes nothing.
    assert client.update_metadata(shop, groups=["p02"], set={"price": 5.0}) == 3
    assert client.update_metadata(shop, filter={"category": "dress"}, set={"title": "x"}, dry_run=True) == 30
    assert client.count(shop, filter={"title": "x"}) == 0
    assert client.update_metadata(shop, filter={"category": "dress"}, set={"title": "x"}) == 30
    assert client.update_metadata(shop, filter={"category": "dress"}, set={"title": "x"}) == 0, "unchanged"
    # Values are checked against the schema, errors name the field.
    with pytest.raises(InvalidArgumentError) as wrong_type:
        client.update_metadata(shop, ["p01#0"], set={"price": "cheap"})
    assert wrong_type.value.field == "set.price"
    with pytest.raises(InvalidArgumentError) as unknown:
        client.update_metadata(shop, ["p01#0"], set={"colour": "red"})
    assert unknown.value.field == "set.colour"
    with pytest.raises(InvalidArgumentError) as unknown_unset:
        client.update_metadata(shop, ["p01#0"], unset=["colour"])
    assert unknown_unset.value.field == "unset[0]"
    with pytest.raises(InvalidArgumentError) as nothing:
        client.update_metadata(shop, ["p01#0"])
    assert nothing.value.field == "set"
    assert client.update_metadata(shop, ["no-such-id"], set={"price": 1.0}) == 0


def test_delete_by_filter_group_and_dry_run(client, shop) -> None:
    assert client.delete(shop, filter={"price": {"lt": 12}}, dry_run=True) == 6
    assert client.count(shop) == 60
    assert client.delete(shop, filter={"price": {"lt": 12}}) == 6
    assert client.delete(shop, groups=["p05"]) == 3
    assert client.count(shop) == 51
    assert client.get(shop, ["p05#0", "p00#1"], missing_ok=True) == []
    with pytest.raises(InvalidArgumentError) as unknown:
        client.delete(shop, filter={"colour": "red"})
    assert unknown.value.field.startswith("filter")


def test_grouped_search_returns_k_distinct_products(client, shop) -> None:
    query = client.get(shop, ["p07#1"], include_vectors=True)[0].vector
    plain = client.search(shop, query, k=9)
    grouped = client.search(shop, query, k=9, group_size=3)
    assert len(grouped) == 9 and len({h.group for h in grouped}) == 9, "k products, not k images"
    assert grouped[0].id == "p07#1" and grouped[0].score == pytest.approx(plain[0].score)
    for hit in grouped:
        assert hit.group_hits[0] == hit.__class__(hit.id, hit.score, hit.metadata, hit.group)
        assert len(hit.group_hits) == 3 and {h.group for h in hit.group_hits} == {hit.group}
        assert [h.score for h in hit.group_hits] == sorted((h.score for h in hit.group_hits), reverse=True)
    assert [h.score for h in grouped] == sorted((h.score for h in grouped), reverse=True)
    # Filters select products; pages are pages of products.
    dresses = client.search(shop, query, k=20, group_size=1, filter={"category": "dress"})
    assert len(dresses) == 10 and all(h.metadata["category"] == "dress" for h in dresses)
    page_2 = client.search(shop, query, k=3, offset=3, group_size=1)
    assert [h.group for h in page_2] == [h.group for h in grouped[3:6]]
    with pytest.raises(InvalidArgumentError) as too_big:
        client.search(shop, query, k=3, group_size=101)
    assert too_big.value.field == "group_by.size"


def test_aliases_resolve_switch_and_guard(client, shop) -> None:
    client.create_collection("alias_next", D, exist_ok=True)
    client.upsert("alias_next", ["n1"], _vectors(1, 5))
    assert client.set_alias("storefront", shop) == ""
    assert client.describe_collection("storefront").name == shop
    assert client.describe_collection(shop).aliases == ("storefront",)
    assert client.count("storefront") == 60
    query = _vectors(1, 3)[0]
    assert client.search("storefront", query, k=1)[0].id.startswith("p")
    assert client.set_alias("storefront", "alias_next") == shop
    assert client.search("storefront", query, k=1)[0].id == "n1"
    assert [(a.alias, a.collection, a.previous) for a in client.list_aliases()] == [
        ("storefront", "alias_next", shop)
    ]
    # Writes through an alias reach its collection.
    client.upsert("storefront", ["n2"], _vectors(1, 6))
    assert client.count("alias_next") == 2
    # Guards: unknown alias/target, one namespace, no drop of an aliased collection.
    with pytest.raises(NotFoundError):
        client.search("no_such_alias", query, k=1)
    with pytest.raises(NotFoundError) as no_target:
        client.set_alias("storefront2", "no_such_collection")
    assert no_target.value.field == "collection"
    with pytest.raises(InvalidArgumentError) as clash:
        client.set_alias(shop, "alias_next")
    assert clash.value.field == "alias"
    with pytest.raises(AlreadyExistsError):
        client.create_collection("storefront", D)
    with pytest.raises(FailedPreconditionError) as aliased:
        client.drop_collection("alias_next")
    assert "storefront" in aliased.value.message
    with pytest.raises(InvalidArgumentError):
        client.drop_collection("storefront")
    with pytest.raises(NotFoundError):
        client.delete_alias("no_such_alias")
    assert client.delete_alias("no_such_alias", missing_ok=True) is False
    assert client.delete_alias("storefront") is True
    assert client.drop_collection("alias_next") is True


def test_alias_routes_old_model_requests_to_the_previous_collection(client) -> None:
    client.create_collection("model_a", D, model_fingerprint="sha256:" + "a" * 64, exist_ok=True)
    client.create_collection("model_b", D + 4, model_fingerprint="sha256:" + "b" * 64, exist_ok=True)
    client.upsert("model_a", ["a1"], _vectors(1, 1), model_fingerprint="sha256:" + "a" * 64)
    client.upsert("model_b", ["b1"], np.ones((1, D + 4), np.float32), model_fingerprint="sha256:" + "b" * 64)
    client.set_alias("catalog", "model_a")
    client.set_alias("catalog", "model_b")
    old = client.search("catalog", _vectors(1, 1)[0], k=1, model_fingerprint="sha256:" + "a" * 64)
    new = client.search("catalog", np.ones(D + 4, np.float32), k=1, model_fingerprint="sha256:" + "b" * 64)
    assert (old[0].id, new[0].id) == ("a1", "b1")
    client.drop_collection("model_a")  # the previous target may go: the alias forgets it
    assert client.list_aliases()[0].previous == ""
    with pytest.raises(FailedPreconditionError):
        client.search("catalog", _vectors(1, 1)[0], k=1, model_fingerprint="sha256:" + "a" * 64)
    client.delete_alias("catalog")
    client.drop_collection("model_b")


def test_backup_and_restore_are_equal_item_by_item(client, shop, tmp_path) -> None:
    client.set_alias("shop_front", shop)
    archive = tmp_path / "shop.tar"
    size = client.backup(archive, collection=shop)
    assert size == archive.stat().st_size > 60 * D * 4
    [info] = client.restore(archive, rename="shop_restored")
    assert info.name == "shop_restored" and info.item_count == 60
    original = list(client.iter_items(shop, include_vectors=True))
    restored = list(client.iter_items("shop_restored", include_vectors=True))
    assert [(i.id, i.group, i.metadata, i.content_key) for i in original] == [
        (i.id, i.group, i.metadata, i.content_key) for i in restored
    ]
    for a, b in zip(original, restored, strict=True):
        np.testing.assert_array_equal(a.vector, b.vector)
    for query in _vectors(5, 11):
        assert client.search(shop, query, k=10, group_size=2) == client.search(
            "shop_restored", query, k=10, group_size=2
        )
    assert client.describe_collection("shop_restored").schema == SCHEMA
    # Restoring over an existing name is refused; garbage is refused; nothing half-restored.
    with pytest.raises(AlreadyExistsError):
        client.restore(archive, rename="shop_restored")
    with pytest.raises(AlreadyExistsError):
        client.restore(archive)  # its own name exists
    garbage = tmp_path / "garbage.tar"
    garbage.write_bytes(b"not a tar archive at all" * 100)
    with pytest.raises(InvalidArgumentError) as bad:
        client.restore(garbage, rename="from_garbage")
    assert bad.value.field == "data"
    assert "from_garbage" not in {c.name for c in client.list_collections()}
    client.delete_alias("shop_front")
    client.drop_collection("shop_restored")


def test_backup_of_everything_keeps_aliases(client, shop, tmp_path, tmp_path_factory) -> None:
    from index_service.server import create_server
    from index_service.settings import IndexSettings

    client.set_alias("everything_front", shop)
    archive = tmp_path / "all.tar"
    client.backup(archive)
    other = IndexSettings(port=0, data_dir=tmp_path_factory.mktemp("restored-elsewhere"))
    with (
        ServerThread(lambda: create_server(other), name="index2") as second,
        IndexClient(second.address) as there,
    ):
        infos = there.restore(archive)
        assert shop in {i.name for i in infos}
        assert ("everything_front", shop) in {(a.alias, a.collection) for a in there.list_aliases()}
        assert there.count("everything_front") == 60
    client.delete_alias("everything_front")


@pytest.fixture(scope="module")
def settled(server, tmp_path_factory):
    """Collections, an alias, cursors and archives that the bad-input cases below leave as they are."""
    tmp = tmp_path_factory.mktemp("verbs")
    with IndexClient(server.address) as client:
        client.create_collection("verbs_a", D, schema=SCHEMA)
        client.upsert("verbs_a", ["p0", "p1"], _vectors(2, 1), [{"price": 1.0}, {"price": 2.0}])
        client.create_collection("verbs_b", D)
        client.upsert("verbs_b", ["a", "b"], _vectors(2, 2))
        client.set_alias("verbs_front", "verbs_b")
        before_switch = client.scroll("verbs_front", limit=1).next_cursor  # it pages verbs_b
        client.set_alias("verbs_front", "verbs_a")
        client.backup(tmp / "a.tar", collection="verbs_a")
        (tmp / "garbage.tar").write_bytes(b"not a tar archive" * 100)
        yield SimpleNamespace(
            tmp=tmp,
            foreign=client.scroll("verbs_b", limit=1).next_cursor,
            before_switch=before_switch,
            archive=tmp / "a.tar",
            garbage=tmp / "garbage.tar",
        )
        client.delete_alias("verbs_front")
        client.drop_collection("verbs_a")
        client.drop_collection("verbs_b")


NOT_FOUND, INVALID, EXISTS = StatusCode.NOT_FOUND, StatusCode.INVALID_ARGUMENT, StatusCode.ALREADY_EXISTS
UNKNOWN_FIELD = {"colour": "red"}
QUERY = np.ones(D, np.float32)
#: (verb / what is wrong, the call, the status code, the field it names) for every lifecycle verb.
BAD_INPUT: list[tuple[str, Callable[[IndexClient, SimpleNamespace], object], StatusCode, str]] = [
    ("Count / unknown alias", lambda c, x: c.count("no_such_alias"), NOT_FOUND, "collection"),
    (
        "Count / unknown field",
        lambda c, x: c.count("verbs_front", filter=UNKNOWN_FIELD),
        INVALID,
        "filter.condition.field",
    ),
    ("Scroll / unknown alias", lambda c, x: c.scroll("no_such_alias"), NOT_FOUND, "collection"),
    (
        "Scroll / unknown field",
        lambda c, x: c.scroll("verbs_front", filter=UNKNOWN_FIELD),
        INVALID,
        "filter.condition.field",
    ),
    (
        "Scroll / cursor of another collection",
        lambda c, x: c.scroll("verbs_a", cursor=x.foreign),
        INVALID,
        "cursor",
    ),
    (
        "Scroll / cursor from before an alias switch",
        lambda c, x: c.scroll("verbs_front", cursor=x.before_switch),
        INVALID,
        "cursor",
    ),
    ("Get / unknown alias", lambda c, x: c.get("no_such_alias", ["p0"]), NOT_FOUND, "collection"),
    ("Search / unknown alias", lambda c, x: c.search("no_such_alias", QUERY, k=1), NOT_FOUND, "collection"),
    (
        "Search grouped / unknown alias",
        lambda c, x: c.search("no_such_alias", QUERY, k=1, group_size=2),
        NOT_FOUND,
        "collection",
    ),
    (
        "Search / unknown field",
        lambda c, x: c.search("verbs_front", QUERY, k=1, filter=UNKNOWN_FIELD),
        INVALID,
        "filter.condition.field",
    ),
    (
        "UpdateMetadata / unknown alias",
        lambda c, x: c.update_metadata("no_such_alias", ["p0"], set={"price": 3.0}),
        NOT_FOUND,
        "collection",
    ),
    (
        "UpdateMetadata / unknown field in filter",
        lambda c, x: c.update_metadata("verbs_front", filter=UNKNOWN_FIELD, set={"price": 3.0}),
        INVALID,
        "filter.condition.field",
    ),
    (
        "UpdateMetadata / unknown field set",
        lambda c, x: c.update_metadata("verbs_front", ["p0"], set=UNKNOWN_FIELD),
        INVALID,
        "set.colour",
    ),
    (
        "Delete / unknown alias",
        lambda c, x: c.delete("no_such_alias", filter={"price": {"lt": 5}}),
        NOT_FOUND,
        "collection",
    ),
    (
        "Delete / unknown field",
        lambda c, x: c.delete("verbs_front", filter=UNKNOWN_FIELD),
        INVALID,
        "filter.condition.field",
    ),
    (
        "Delete / unknown field, dry run",
        lambda c, x: c.delete("verbs_front", filter=UNKNOWN_FIELD, dry_run=True),
        INVALID,
        "filter.condition.field",
    ),
    (
        "SetAlias / unknown collection",
        lambda c, x: c.set_alias("verbs_new", "no_such_collection"),
        NOT_FOUND,
        "collection",
    ),
    ("SetAlias / at an alias", lambda c, x: c.set_alias("verbs_new", "verbs_front"), NOT_FOUND, "collection"),
    ("SetAlias / a collection's name", lambda c, x: c.set_alias("verbs_b", "verbs_a"), INVALID, "alias"),
    ("SetAlias / malformed name", lambda c, x: c.set_alias("no spaces", "verbs_a"), INVALID, "alias"),
    ("DeleteAlias / unknown alias", lambda c, x: c.delete_alias("no_such_alias"), NOT_FOUND, "alias"),
    ("DeleteAlias / malformed name", lambda c, x: c.delete_alias("no spaces"), INVALID, "alias"),
    (
        "Backup / unknown alias",
        lambda c, x: c.backup(x.tmp / "ghost.tar", collection="no_such_alias"),
        NOT_FOUND,
        "collection",
    ),
    (
        "Backup / malformed name",
        lambda c, x: c.backup(x.tmp / "ghost.tar", collection="no spaces"),
        INVALID,
        "collection",
    ),
    ("Restore / not an archive", lambda c, x: c.restore(x.garbage, rename="verbs_c"), INVALID, "data"),
    ("Restore / malformed rename", lambda c, x: c.restore(x.archive, rename="no spaces"), INVALID, "rename"),
    (
        "Restore / over an alias",
        lambda c, x: c.restore(x.archive, rename="verbs_front"),
        EXISTS,
        "collection",
    ),
    ("Restore / over a collection", lambda c, x: c.restore(x.archive), EXISTS, "collection"),
]


@pytest.mark.parametrize(
    ("call", "code", "field"), [case[1:] for case in BAD_INPUT], ids=[c[0] for c in BAD_INPUT]
)
def test_bad_input_gets_a_precise_status_and_changes_nothing(client, settled, call, code, field) -> None:
    def state() -> tuple:
        items = {
            name: [(i.id, i.metadata) for i in client.iter_items(name)] for name in ("verbs_a", "verbs_b")
        }
        return [c.name for c in client.list_collections()], client.list_aliases(), items

    before = state()
    with pytest.raises(ClipsearchError) as error:
        call(client, settled)
    assert (error.value.code, error.value.field) == (code, field), error.value.message
    assert state() == before
    assert not list(settled.tmp.glob("ghost.tar*")), "a failed backup leaves no file"


def test_restore_of_a_missing_file_fails_before_any_call(client, tmp_path) -> None:
    with pytest.raises(FileNotFoundError):
        client.restore(tmp_path / "no-such.tar")
