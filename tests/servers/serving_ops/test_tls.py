"""--ssl_config_file: TLS and mutual TLS accept only the right credentials."""

import datetime
import ipaddress
from concurrent import futures

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from google.protobuf import text_format
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from tensorflow_serving.apis import get_model_status_pb2, model_service_pb2_grpc

from serving.config_protos import SSLConfig
from serving.tls import TlsConfigError, server_credentials
from toolkit.serve import LocalServer

HALF = "half"


def _pem_key(key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _cert(subject: str, key, issuer_cert=None, issuer_key=None, ca=False, server=False):
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_cert.subject if issuer_cert else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
    cert = builder.sign(issuer_key or key, hashes.SHA256())
    return cert, cert.public_bytes(serialization.Encoding.PEM)


def _authority(name: str):
    key = ec.generate_private_key(ec.SECP256R1())
    cert, pem = _cert(name, key, ca=True)
    return key, cert, pem


def _leaf(name: str, ca_key, ca_cert, server=False):
    key = ec.generate_private_key(ec.SECP256R1())
    _, pem = _cert(name, key, ca_cert, ca_key, server=server)
    return _pem_key(key), pem


@pytest.fixture(scope="module")
def pki():
    ca_key, ca_cert, ca_pem = _authority("tfkit test CA")
    rogue_key, rogue_cert, rogue_pem = _authority("someone else's CA")
    return {
        "ca": ca_pem,
        "server": _leaf("model server", ca_key, ca_cert, server=True),
        "client": _leaf("good client", ca_key, ca_cert),
        "rogue_ca": rogue_pem,
        "rogue_client": _leaf("rogue client", rogue_key, rogue_cert),
    }


def _write_ssl_config(path, pki, client_verify: bool):
    key, cert = pki["server"]
    config = SSLConfig(
        server_key=key.decode(), server_cert=cert.decode(), custom_ca=pki["ca"].decode(), client_verify=client_verify
    )
    path.write_text(text_format.MessageToString(config))
    return path


@pytest.fixture(scope="module")
def mtls_server(pki, half_base, tmp_path_factory):
    """`python -m serving` requiring client certificates signed by the test CA."""
    config = _write_ssl_config(tmp_path_factory.mktemp("tls") / "ssl.config", pki, client_verify=True)
    # models=[]: LocalServer's readiness probe speaks plaintext; our server
    # loads its models before it logs that gRPC listens.
    server = LocalServer(
        [f"--model_name={HALF}", f"--model_base_path={half_base}", f"--ssl_config_file={config}"],
        models=[],
        timeout=120,
    )
    with server:
        yield server


def _channel(target, root, client=None):
    key, cert = client if client else (None, None)
    creds = grpc.ssl_channel_credentials(root_certificates=root, private_key=key, certificate_chain=cert)
    return grpc.secure_channel(target, creds)


def _status_ok(channel) -> bool:
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = HALF
    try:
        model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(request, timeout=10)
        return True
    except grpc.RpcError as err:
        assert err.code() == grpc.StatusCode.UNAVAILABLE, err  # the handshake failed
        return False


def test_mutual_tls_accepts_only_clients_of_the_configured_ca(mtls_server, pki):
    target = mtls_server.grpc_target
    with _channel(target, pki["ca"], pki["client"]) as channel:
        assert _status_ok(channel)
    with _channel(target, pki["ca"]) as channel:  # no client certificate
        assert not _status_ok(channel)
    with _channel(target, pki["ca"], pki["rogue_client"]) as channel:  # signed by another CA
        assert not _status_ok(channel)
    with _channel(target, pki["rogue_ca"], pki["client"]) as channel:  # does not trust the server
        assert not _status_ok(channel)
    with grpc.insecure_channel(target) as channel:  # plaintext
        assert not _status_ok(channel)
    assert any("Using SSL credentials" in line for line in mtls_server.log_lines())


def test_server_side_tls_without_client_verification(pki, tmp_path):
    config = _write_ssl_config(tmp_path / "ssl.config", pki, client_verify=False)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_secure_port("127.0.0.1:0", server_credentials(str(config)))
    server.start()
    try:

        def check(channel):
            try:
                return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10).status
            except grpc.RpcError as err:
                return err.code()

        with _channel(f"127.0.0.1:{port}", pki["ca"]) as channel:
            assert check(channel) == health_pb2.HealthCheckResponse.SERVING
        with _channel(f"127.0.0.1:{port}", pki["rogue_ca"]) as channel:
            assert check(channel) == grpc.StatusCode.UNAVAILABLE
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            assert check(channel) == grpc.StatusCode.UNAVAILABLE
    finally:
        server.stop(0)


@pytest.mark.parametrize(
    "fields,message",
    [
        ({"server_cert": "x"}, "server_key must hold a PEM block"),
        (
            {"server_key": "-----BEGIN x", "server_cert": "-----BEGIN y", "client_verify": True},
            "client_verify needs custom_ca",
        ),
    ],
)
def test_unusable_ssl_configs_are_named(tmp_path, fields, message):
    path = tmp_path / "ssl.config"
    path.write_text(text_format.MessageToString(SSLConfig(**fields)))
    with pytest.raises(TlsConfigError, match=message) as err:
        server_credentials(str(path))
    assert str(path) in str(err.value)


def test_missing_or_malformed_ssl_config_file(tmp_path):
    with pytest.raises(TlsConfigError, match="cannot read --ssl_config_file"):
        server_credentials(str(tmp_path / "absent.config"))
    bad = tmp_path / "bad.config"
    bad.write_text("server_key: 1 2 3")
    with pytest.raises(TlsConfigError, match="invalid SSLConfig in --ssl_config_file"):
        server_credentials(str(bad))
