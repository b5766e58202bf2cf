"""gRPC server credentials from --ssl_config_file, as server.cc builds them.

The SSLConfig text proto holds the PEM texts themselves (not paths):
server_key, server_cert, optional custom_ca (the roots client certificates
must chain to) and client_verify (require and verify a client certificate).
"""

from __future__ import annotations

import logging

import grpc

from serving.config_protos import ConfigFileError, SSLConfig, parse_text_file

log = logging.getLogger("serving")


class TlsConfigError(ValueError):
    """An SSLConfig that cannot make credentials; the message names the file."""


def server_credentials(ssl_config_path: str) -> grpc.ServerCredentials:
    """grpc.ServerCredentials for an SSLConfig text-proto file.

    Raises TlsConfigError for an unreadable file, a malformed proto or
    missing PEM fields.
    """
    try:
        config = parse_text_file(ssl_config_path, SSLConfig, "--ssl_config_file")
    except ConfigFileError as err:
        raise TlsConfigError(str(err)) from None
    for field in ("server_key", "server_cert"):
        if "-----BEGIN" not in getattr(config, field):
            raise TlsConfigError(
                f"--ssl_config_file {ssl_config_path}: {field} must hold a PEM block (the text itself, not a path)"
            )
    if config.client_verify and not config.custom_ca:
        # gRPC C++ would fall back to the system roots; Python's gRPC needs
        # them spelled out, and verifying clients against public CAs is
        # never what a model server wants anyway.
        raise TlsConfigError(
            f"--ssl_config_file {ssl_config_path}: client_verify needs custom_ca "
            "(the CA that signs client certificates)"
        )
    log.info("Using SSL credentials")
    return grpc.ssl_server_credentials(
        [(config.server_key.encode(), config.server_cert.encode())],
        root_certificates=config.custom_ca.encode() or None,
        require_client_auth=config.client_verify,
    )
