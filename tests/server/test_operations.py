"""Issue 8 on the real services: tokens on every RPC, metrics, request ids, mutual TLS."""

from __future__ import annotations

import json
import logging
import socket
import urllib.request

import grpc
import numpy as np
import pytest
from certs import make_pki
from harness import ServerThread

from clipsearch import ChannelOptions, SearchClient, UnavailableError
from clipsearch.server.logs import JsonFormatter
from clipsearch.server.security import WRITE_METHODS
from clipsearch.v1 import encoder_pb2, encoder_pb2_grpc, index_pb2, index_pb2_grpc
from clipsearch.wire import vector_to_proto

pytestmark = pytest.mark.functional


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _start_pair(tmp_path, **operations):
    from encoder_service.server import create_server as create_encoder
    from encoder_service.settings import EncoderSettings
    from index_service.server import create_server as create_index
    from index_service.settings import IndexSettings

    encoder_settings = EncoderSettings(port=0, model="clipsearch-tiny", pretrained="random", **operations)
    index_settings = IndexSettings(port=0, data_dir=tmp_path / "index", **operations)
    encoder = ServerThread(lambda: create_encoder(encoder_settings), name="encoder").start()
    index = ServerThread(lambda: create_index(index_settings), name="index").start()
    return encoder, index


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("secured")
    tokens = tmp_path / "tokens"
    tokens.write_text("read reader\nwrite writer\n")
    encoder, index = _start_pair(tmp_path, token_file=str(tokens))
    yield encoder, index
    encoder.stop()
    index.stop()


def _requests(dimension: int) -> dict[str, object]:
    vector = vector_to_proto(np.ones(dimension, dtype=np.float32) / np.sqrt(dimension))
    config = index_pb2.CollectionConfig(name="auth_matrix", dimension=dimension)
    return {
        "/clipsearch.v1.EncoderService/Embed": encoder_pb2.EmbedRequest(
            inputs=[encoder_pb2.EmbedInput(text="x")]
        ),
        "/clipsearch.v1.EncoderService/EmbedStream": [
            encoder_pb2.EmbedStreamRequest(chunk_id="c", inputs=[encoder_pb2.EmbedInput(text="x")])
        ],
        "/clipsearch.v1.EncoderService/GetModelInfo": encoder_pb2.GetModelInfoRequest(),
        "/clipsearch.v1.IndexService/CreateCollection": index_pb2.CreateCollectionRequest(
            config=config, exist_ok=True
        ),
        "/clipsearch.v1.IndexService/ListCollections": index_pb2.ListCollectionsRequest(),
        "/clipsearch.v1.IndexService/DescribeCollection": index_pb2.DescribeCollectionRequest(
            collection="auth_matrix"
        ),
        "/clipsearch.v1.IndexService/AddFields": index_pb2.AddFieldsRequest(
            collection="auth_matrix",
            fields=[index_pb2.FieldSchema(name="color", type=index_pb2.FIELD_TYPE_KEYWORD)],
        ),
        "/clipsearch.v1.IndexService/Upsert": index_pb2.UpsertRequest(
            collection="auth_matrix", items=[index_pb2.Item(id="a", vector=vector)]
        ),
        "/clipsearch.v1.IndexService/Get": index_pb2.GetRequest(
            collection="auth_matrix", ids=["a"], missing_ok=True
        ),
        "/clipsearch.v1.IndexService/Search": index_pb2.SearchRequest(
            collection="auth_matrix", queries=[vector], k=1
        ),
        "/clipsearch.v1.IndexService/Delete": index_pb2.DeleteRequest(collection="auth_matrix", ids=["a"]),
        "/clipsearch.v1.IndexService/DropCollection": index_pb2.DropCollectionRequest(
            collection="auth_matrix_other", missing_ok=True
        ),
        "/clipsearch.v1.IndexService/Count": index_pb2.CountRequest(collection="auth_matrix"),
        "/clipsearch.v1.IndexService/Scroll": index_pb2.ScrollRequest(collection="auth_matrix"),
        "/clipsearch.v1.IndexService/UpdateMetadata": index_pb2.UpdateMetadataRequest(
            collection="auth_matrix", ids=["a"], unset=["color"]
        ),
        "/clipsearch.v1.IndexService/SetAlias": index_pb2.SetAliasRequest(
            alias="auth_alias", collection="auth_matrix"
        ),
        "/clipsearch.v1.IndexService/DeleteAlias": index_pb2.DeleteAliasRequest(
            alias="auth_alias", missing_ok=True
        ),
        "/clipsearch.v1.IndexService/ListAliases": index_pb2.ListAliasesRequest(),
        "/clipsearch.v1.IndexService/Backup": index_pb2.BackupRequest(collection="auth_matrix"),
        "/clipsearch.v1.IndexService/Restore": [index_pb2.RestoreRequest(data=b"not a tar")],
    }


def _call(address: str, path: str, request, token: str | None) -> grpc.StatusCode:
    metadata = [("authorization", f"Bearer {token}")] if token else []
    service, method = path.strip("/").split("/")
    with grpc.insecure_channel(address) as channel:
        stub_class = (
            encoder_pb2_grpc.EncoderServiceStub if "Encoder" in service else index_pb2_grpc.IndexServiceStub
        )
        callable_ = getattr(stub_class(channel), method)
        module = encoder_pb2 if "Encoder" in service else index_pb2
        descriptor = module.DESCRIPTOR.services_by_name[service.split(".")[-1]].methods_by_name[method]
        try:
            answer = callable_(
                iter(request) if descriptor.client_streaming else request, metadata=metadata, timeout=30
            )
            if descriptor.server_streaming:
                list(answer)
        except grpc.RpcError as error:
            return error.code()
    return grpc.StatusCode.OK


def test_every_rpc_needs_the_right_token(secured) -> None:
    encoder, index = secured
    dimension = 64
    requests = _requests(dimension)
    every_method = {
        f"/{service.full_name}/{method.name}"
        for module in (encoder_pb2, index_pb2)
        for service in module.DESCRIPTOR.services_by_name.values()
        for method in service.methods
    }
    assert set(requests) == every_method, "a new RPC needs a row in this matrix"
    denied = (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED)
    for path, request in requests.items():
        address = encoder.address if "Encoder" in path else index.address
        assert _call(address, path, request, None) == grpc.StatusCode.UNAUTHENTICATED, path
        assert _call(address, path, request, "guess") == grpc.StatusCode.UNAUTHENTICATED, path
        as_reader = _call(address, path, request, "reader")
        if path in WRITE_METHODS:
            assert as_reader == grpc.StatusCode.PERMISSION_DENIED, path
        else:
            assert as_reader not in denied, (path, as_reader)
        assert _call(address, path, request, "writer") not in denied, path
    # Health checks stay open for probes.
    from clipsearch.health import check_health

    assert check_health(encoder.address) == check_health(index.address) == "SERVING"


def test_sdk_with_tokens_and_metrics_scrape(tmp_path, small_catalog) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("write ops-token\n")
    encoder_metrics, index_metrics = _free_port(), _free_port()
    from encoder_service.server import create_server as create_encoder
    from encoder_service.settings import EncoderSettings
    from index_service.server import create_server as create_index
    from index_service.settings import IndexSettings

    enc = EncoderSettings(
        port=0,
        model="clipsearch-tiny",
        pretrained="random",
        token_file=str(tokens),
        metrics_port=encoder_metrics,
    )
    idx = IndexSettings(
        port=0, data_dir=tmp_path / "index", token_file=str(tokens), metrics_port=index_metrics
    )
    records: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(JsonFormatter().format(record))  # type: ignore[method-assign]
    rpc_log = logging.getLogger("clipsearch.rpc")
    rpc_log.addHandler(handler)
    old_level = rpc_log.level
    rpc_log.setLevel(logging.INFO)
    try:
        with (
            ServerThread(lambda: create_encoder(enc), name="encoder") as encoder,
            ServerThread(lambda: create_index(idx), name="index") as index,
            SearchClient(encoder.address, index.address, options=ChannelOptions(token="ops-token")) as client,
        ):
            client.create_collection("ops", num_shards=2)
            client.ingest(small_catalog, collection="ops")
            records.clear()
            client.search_text("a red dress", collection="ops", k=3)
            lines = [json.loads(line) for line in records]
            encoder_text = urllib.request.urlopen(
                f"http://127.0.0.1:{encoder_metrics}/metrics", timeout=5
            ).read()
            index_text = urllib.request.urlopen(f"http://127.0.0.1:{index_metrics}/metrics", timeout=5).read()
    finally:
        rpc_log.removeHandler(handler)
        rpc_log.setLevel(old_level)

    # One search, one request id, seen by both services.
    embed = [line for line in lines if line.get("rpc_method", "").endswith("/Embed")]
    search = [line for line in lines if line.get("rpc_method", "").endswith("/Search")]
    assert len(embed) == len(search) == 1
    assert embed[0]["request_id"] == search[0]["request_id"] and len(embed[0]["request_id"]) == 16
    assert embed[0]["code"] == search[0]["code"] == "OK"
    assert "ops-token" not in json.dumps(lines)

    encoder_metrics_text, index_metrics_text = encoder_text.decode(), index_text.decode()
    assert (
        'clipsearch_rpc_requests_total{code="OK",method="/clipsearch.v1.EncoderService/Embed"}'
        in encoder_metrics_text
    )
    for series in ("clipsearch_encoder_", "clipsearch_rpc_latency_seconds_bucket"):
        assert series in encoder_metrics_text, series
    assert 'clipsearch_index_items{collection="ops",shard="0"}' in index_metrics_text
    assert 'clipsearch_index_items{collection="ops",shard="1"}' in index_metrics_text
    assert "clipsearch_index_snapshot_age_seconds" in index_metrics_text
    assert "clipsearch_index_items_written_total 40.0" in index_metrics_text
    assert (
        'clipsearch_rpc_requests_total{code="OK",method="/clipsearch.v1.IndexService/Upsert"}'
        in index_metrics_text
    )


def test_real_pair_over_mutual_tls(tmp_path, small_catalog) -> None:
    pki = make_pki(tmp_path)
    encoder, index = _start_pair(
        tmp_path,
        tls_cert=str(pki.server.cert),
        tls_key=str(pki.server.key),
        tls_client_ca=str(pki.ca.cert),
    )
    try:
        options = ChannelOptions(
            tls_ca_file=str(pki.ca.cert), tls_cert_file=str(pki.client.cert), tls_key_file=str(pki.client.key)
        )
        with SearchClient(encoder.address, index.address, options=options) as client:
            client.create_collection("tls", exist_ok=True)
            assert client.ingest(small_catalog, collection="tls").ingested == 40
            assert len(client.search_text("a hat", collection="tls", k=2)) == 2
        plain = ChannelOptions(tls_ca_file=str(pki.ca.cert), retries=False)
        with pytest.raises(UnavailableError):  # no client certificate: the handshake is refused
            SearchClient(encoder.address, index.address, options=plain, timeout_s=3).encoder.model_info()
    finally:
        encoder.stop()
        index.stop()


@pytest.mark.parametrize("mode", ["all", "errors"])
def test_access_log_all_or_errors_only(tmp_path, mode) -> None:
    """--access-log errors: a line for a call that failed, none for one that ended OK; the
    metrics count both either way."""
    from clipsearch.server.settings import GrpcServerSettings
    from index_service.server import create_server as create_index
    from index_service.settings import IndexSettings

    idx = IndexSettings(port=0, data_dir=tmp_path / "index", access_log=mode)
    records: list[dict] = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(json.loads(JsonFormatter().format(record)))  # type: ignore[method-assign]
    rpc_log = logging.getLogger("clipsearch.rpc")
    rpc_log.addHandler(handler)
    old_level = rpc_log.level
    rpc_log.setLevel(logging.INFO)
    try:
        with ServerThread(lambda: create_index(idx), name="index") as index:
            with grpc.insecure_channel(index.address) as channel:
                stub = index_pb2_grpc.IndexServiceStub(channel)
                stub.ListCollections(index_pb2.ListCollectionsRequest(), timeout=10)
                with pytest.raises(grpc.RpcError) as failed:
                    stub.DescribeCollection(
                        index_pb2.DescribeCollectionRequest(collection="nope"), timeout=10
                    )
                assert failed.value.code() == grpc.StatusCode.NOT_FOUND
            counted = index.server.metrics_registry.get_sample_value(
                "clipsearch_rpc_requests_total",
                {"method": "/clipsearch.v1.IndexService/ListCollections", "code": "OK"},
            )
    finally:
        rpc_log.removeHandler(handler)
        rpc_log.setLevel(old_level)
    logged = {
        (line["rpc_method"].rsplit("/", 1)[-1], line["code"]) for line in records if "rpc_method" in line
    }
    assert ("DescribeCollection", "NOT_FOUND") in logged
    assert (("ListCollections", "OK") in logged) == (mode == "all")
    assert counted == 1.0
    assert GrpcServerSettings.__dataclass_fields__["access_log"].default == "all"
