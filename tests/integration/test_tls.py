"""TLS on the gRPC listener: a real grpc.aio server with `tls.server_credentials`, reached by
TLS, plaintext and mutual-TLS clients."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest

from tests.certificates import Pki, make_pki
from tidegate.config import GrpcConfig
from tidegate.errors import ConfigError
from tidegate.tls import server_credentials

METHOD = "/tidegate.test.Echo/Call"


class Echo(grpc.GenericRpcHandler):
    """Answers every call of METHOD with its request bytes."""

    def service(
        self, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[bytes, bytes] | None:
        async def echo(request: bytes, context: object) -> bytes:
            return request

        if handler_call_details.method == METHOD:
            return grpc.unary_unary_rpc_method_handler(echo)
        return None


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def grpc_config(pki: Pki, *, mutual: bool) -> GrpcConfig:
    return GrpcConfig(
        tls_cert_file=str(pki.server.cert_file),
        tls_key_file=str(pki.server.key_file),
        tls_client_ca_file=str(pki.ca.cert_file) if mutual else "",
    )


async def call_through(
    config: GrpcConfig, client: grpc.ChannelCredentials | None
) -> grpc.StatusCode:
    """Start a server with ``config``, make one call with ``client`` (None: plaintext)."""
    credentials = server_credentials(config)
    assert credentials is not None
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((Echo(),))
    port = server.add_secure_port("127.0.0.1:0", credentials)
    await server.start()
    try:
        target = f"127.0.0.1:{port}"
        if client is None:
            channel = grpc.aio.insecure_channel(target)
        else:
            channel = grpc.aio.secure_channel(target, client)
        async with channel:
            call: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(METHOD)
            try:
                assert await call(b"ping", timeout=5) == b"ping"
            except grpc.aio.AioRpcError as exc:
                return exc.code()
            return grpc.StatusCode.OK
    finally:
        await server.stop(None)


def test_plaintext_without_certificate() -> None:
    assert server_credentials(GrpcConfig()) is None


def test_tls_client_succeeds_and_plaintext_client_fails(pki: Pki) -> None:
    config = grpc_config(pki, mutual=False)
    trusting = grpc.ssl_channel_credentials(root_certificates=pki.ca.cert_pem)
    assert asyncio.run(call_through(config, trusting)) is grpc.StatusCode.OK
    assert asyncio.run(call_through(config, None)) is grpc.StatusCode.UNAVAILABLE


def test_client_that_does_not_trust_the_ca_fails(pki: Pki, tmp_path: Path) -> None:
    other = make_pki(tmp_path)
    distrusting = grpc.ssl_channel_credentials(root_certificates=other.ca.cert_pem)
    config = grpc_config(pki, mutual=False)
    assert asyncio.run(call_through(config, distrusting)) is grpc.StatusCode.UNAVAILABLE


def test_mutual_tls_requires_a_certificate_signed_by_the_client_ca(
    pki: Pki, tmp_path: Path
) -> None:
    config = grpc_config(pki, mutual=True)
    anonymous = grpc.ssl_channel_credentials(root_certificates=pki.ca.cert_pem)
    signed = grpc.ssl_channel_credentials(
        root_certificates=pki.ca.cert_pem,
        private_key=pki.client.key_pem,
        certificate_chain=pki.client.cert_pem,
    )
    stranger = make_pki(tmp_path).client  # signed by another CA
    foreign = grpc.ssl_channel_credentials(
        root_certificates=pki.ca.cert_pem,
        private_key=stranger.key_pem,
        certificate_chain=stranger.cert_pem,
    )
    assert asyncio.run(call_through(config, anonymous)) is grpc.StatusCode.UNAVAILABLE
    assert asyncio.run(call_through(config, foreign)) is grpc.StatusCode.UNAVAILABLE
    assert asyncio.run(call_through(config, signed)) is grpc.StatusCode.OK


@pytest.mark.parametrize(
    ("field", "message"),
    [
        ("tls_cert_file", "grpc.tls_cert_file: cannot read {path}: No such file or directory"),
        ("tls_key_file", "grpc.tls_key_file: cannot read {path}: No such file or directory"),
        (
            "tls_client_ca_file",
            "grpc.tls_client_ca_file: cannot read {path}: No such file or directory",
        ),
    ],
)
def test_missing_file_is_a_config_error_naming_key_and_path(
    pki: Pki, tmp_path: Path, field: str, message: str
) -> None:
    config = grpc_config(pki, mutual=True)
    missing = str(tmp_path / "missing.pem")
    setattr(config, field, missing)
    with pytest.raises(ConfigError) as raised:
        server_credentials(config)
    assert str(raised.value) == message.format(path=missing)


def test_unreadable_and_non_pem_files_are_config_errors(pki: Pki, tmp_path: Path) -> None:
    config = grpc_config(pki, mutual=False)
    config.tls_key_file = str(tmp_path)  # a directory: open() fails
    with pytest.raises(ConfigError, match=r"^grpc\.tls_key_file: cannot read .*: Is a directory"):
        server_credentials(config)
    not_pem = tmp_path / "cert.der"
    not_pem.write_bytes(b"\x30\x82\x01\x0a")
    config = grpc_config(pki, mutual=False)
    config.tls_cert_file = str(not_pem)
    with pytest.raises(ConfigError) as raised:
        server_credentials(config)
    assert str(raised.value) == f"grpc.tls_cert_file: {not_pem} is not a PEM file"


def test_certificate_without_key_is_a_config_error(pki: Pki) -> None:
    config = GrpcConfig(tls_cert_file=str(pki.server.cert_file))
    with pytest.raises(ConfigError, match="must be set together"):
        server_credentials(config)
