"""TLS for the OTLP/gRPC listener, from `grpc.tls_*` in the static configuration."""

from __future__ import annotations

import grpc

from tidegate.config import GrpcConfig
from tidegate.errors import ConfigError


def server_credentials(config: GrpcConfig) -> grpc.ServerCredentials | None:
    """Credentials for ``server.add_secure_port``, or None for plaintext (no certificate
    configured). With ``tls_client_ca_file`` every client must present a certificate signed by
    one of its CAs (mutual TLS). Files are read now, so a missing or unreadable one is a
    ConfigError at startup that names the key and the path."""
    if not config.tls_cert_file and not config.tls_key_file:
        return None
    if not config.tls_cert_file or not config.tls_key_file:
        raise ConfigError("grpc.tls_cert_file and grpc.tls_key_file must be set together")
    chain = _read_pem("grpc.tls_cert_file", config.tls_cert_file)
    key = _read_pem("grpc.tls_key_file", config.tls_key_file)
    client_ca = None
    if config.tls_client_ca_file:
        client_ca = _read_pem("grpc.tls_client_ca_file", config.tls_client_ca_file)
    return grpc.ssl_server_credentials(
        [(key, chain)],
        root_certificates=client_ca,
        require_client_auth=client_ca is not None,
    )


def _read_pem(key: str, path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise ConfigError(f"{key}: cannot read {path}: {exc.strerror or exc}") from exc
    # grpc's own error for a file that is not PEM names neither the file nor the setting.
    if b"-----BEGIN " not in data:
        raise ConfigError(f"{key}: {path} is not a PEM file")
    return data
