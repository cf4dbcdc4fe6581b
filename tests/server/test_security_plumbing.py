"""TLS, mutual TLS, token scopes, request ids and RPC metrics of the shared server plumbing.

A stand-in servicer on a real loopback server; the per-service suites walk every
RPC of the real services through the same interceptors.
"""

from __future__ import annotations

import asyncio
import socket

import pytest
from certs import make_pki
from harness import ServerThread
from standin import StandInEncoder

from clipsearch import (
    ChannelOptions,
    EncoderClient,
    InvalidArgumentError,
    UnauthenticatedError,
    UnavailableError,
    aio,
)
from clipsearch.health import check_health
from clipsearch.server.security import TlsFiles, TokenScopes, check_bind_is_safe
from clipsearch.server.server import ManagedServer, ServerOptions, ServiceBinding
from clipsearch.v1 import encoder_pb2_grpc

pytestmark = pytest.mark.functional


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _running(**options) -> ServerThread:
    async def start() -> ManagedServer:
        binding = ServiceBinding(
            encoder_pb2_grpc.add_EncoderServiceServicer_to_server,
            StandInEncoder(),
            "clipsearch.v1.EncoderService",
        )
        server = ManagedServer(ServerOptions(port=0, **options), [binding])
        await server.start()
        await server.set_serving()
        return server

    return ServerThread(start, name="secured").start()


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


def test_tokens_gate_calls_but_not_health(tmp_path) -> None:
    token_file = tmp_path / "tokens"
    token_file.write_text("# scopes\nread reader-token\nwrite writer-token\n")
    running = _running(tokens=TokenScopes.from_file(token_file))
    try:
        with pytest.raises(UnauthenticatedError):
            EncoderClient(running.address, options=ChannelOptions(token=None)).embed_texts(["hi"])
        with pytest.raises(UnauthenticatedError):
            EncoderClient(running.address, options=ChannelOptions(token="guess")).embed_texts(["hi"])
        for token in ("reader-token", "writer-token"):
            assert EncoderClient(running.address, options=ChannelOptions(token=token)).embed_texts(
                ["hi"]
            ).shape == (1, 2)
        assert check_health(running.address) == "SERVING"

        async def async_call():
            async with aio.EncoderClient(
                running.address, options=ChannelOptions(token="reader-token")
            ) as client:
                return await client.embed_texts(["hi"])

        assert asyncio.run(async_call()).shape == (1, 2)
    finally:
        running.stop()


def test_token_file_errors_are_clear(tmp_path) -> None:
    bad = tmp_path / "tokens"
    bad.write_text("admin secret\n")
    with pytest.raises(ValueError, match="tokens:1: expected"):
        TokenScopes.from_file(bad)


def test_request_id_reaches_the_server_and_metrics_count_calls() -> None:
    metrics_port = _free_port()
    running = _running(metrics_port=metrics_port)
    try:
        with EncoderClient(running.address) as client:
            client.embed_texts(["whoami"])
            first = client.last_fingerprint
            client.embed_texts(["whoami"])
            assert len(first) == 16 and client.last_fingerprint != first
            with pytest.raises(InvalidArgumentError):
                client.embed_texts([""])
        import urllib.request

        text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read().decode()
        embed = '/clipsearch.v1.EncoderService/Embed"'
        assert f'clipsearch_rpc_requests_total{{code="OK",method="{embed[:-1]}"}} 2.0' in text
        assert f'clipsearch_rpc_requests_total{{code="INVALID_ARGUMENT",method="{embed[:-1]}"}} 1.0' in text
        assert "clipsearch_rpc_latency_seconds_bucket" in text
    finally:
        running.stop()


def test_tls_and_mutual_tls(pki) -> None:
    tls = _running(tls=TlsFiles(pki.server.cert, pki.server.key))
    try:
        secure = ChannelOptions(tls_ca_file=str(pki.ca.cert))
        assert EncoderClient(tls.address, options=secure).embed_texts(["hi"]).shape == (1, 2)
        with pytest.raises(UnavailableError):
            EncoderClient(tls.address, options=ChannelOptions(retries=False), timeout_s=3).embed_texts(["hi"])
    finally:
        tls.stop()

    mutual = _running(tls=TlsFiles(pki.server.cert, pki.server.key, client_ca_file=pki.ca.cert))
    try:

        def call(cert, key) -> None:
            options = ChannelOptions(
                tls_ca_file=str(pki.ca.cert),
                tls_cert_file=str(cert) if cert else None,
                tls_key_file=str(key) if key else None,
                retries=False,
            )
            EncoderClient(mutual.address, options=options, timeout_s=3).embed_texts(["hi"])

        call(pki.client.cert, pki.client.key)
        for cert, key in (
            (None, None),
            (pki.other_client.cert, pki.other_client.key),
            (pki.expired_client.cert, pki.expired_client.key),
        ):
            with pytest.raises(UnavailableError):
                call(cert, key)
    finally:
        mutual.stop()


@pytest.mark.parametrize(
    ("host", "tls", "auth", "insecure", "allowed"),
    [
        ("127.0.0.1", False, False, False, True),
        ("::1", False, False, False, True),
        ("localhost", False, False, False, True),
        ("0.0.0.0", False, False, False, False),
        ("0.0.0.0", True, False, False, False),
        ("0.0.0.0", True, True, False, True),
        ("10.1.2.3", False, False, True, True),
    ],
)
def test_non_loopback_binds_need_tls_and_tokens_or_insecure(host, tls, auth, insecure, allowed) -> None:
    if allowed:
        check_bind_is_safe(host, tls=tls, auth=auth, insecure=insecure)
    else:
        with pytest.raises(ValueError, match="--insecure"):
            check_bind_is_safe(host, tls=tls, auth=auth, insecure=insecure)
