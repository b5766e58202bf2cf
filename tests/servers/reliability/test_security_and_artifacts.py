"""Security promises and bad artifacts given to the toolkit.

TLS/mTLS refusal is tested in tests/serving_ops/test_tls.py and SIGTERM with
requests in flight in tests/serving_ops/test_shutdown.py; not repeated here.
"""

import ast
import ipaddress
import os
import pickle
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from toolkit.cli import cli
from toolkit.serve import free_port

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("toolkit", "serving", "reliability")
FORBIDDEN_MODULES = {"pickle", "cPickle", "dill", "marshal", "shelve", "joblib"}


def _calls(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            yield name, node


def test_nothing_evaluates_or_unpickles_user_input():
    problems = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text(), str(path))
            where = path.relative_to(ROOT)
            for node in ast.walk(tree):
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    names = [a.name for a in node.names] + ([node.module] if isinstance(node, ast.ImportFrom) else [])
                    bad = {n.split(".")[0] for n in names if n} & FORBIDDEN_MODULES
                    if bad:
                        problems.append(f"{where}:{node.lineno} imports {', '.join(sorted(bad))}")
            for name, call in _calls(tree):
                keywords = {k.arg: k.value for k in call.keywords}
                if name in ("eval", "exec") and isinstance(call.func, ast.Name):
                    problems.append(f"{where}:{call.lineno} calls {name}()")
                if (
                    name == "load"
                    and isinstance(call.func, ast.Attribute)
                    and getattr(call.func.value, "id", "") == "np"
                ):
                    flag = keywords.get("allow_pickle")
                    if not (isinstance(flag, ast.Constant) and flag.value is False):
                        problems.append(f"{where}:{call.lineno} np.load without allow_pickle=False")
                if (
                    name == "load"
                    and getattr(call.func, "value", None) is not None
                    and getattr(call.func.value, "id", "") == "yaml"
                ):
                    problems.append(f"{where}:{call.lineno} yaml.load (use yaml.safe_load)")
    assert problems == []


class _Payload:
    """Unpickling this creates `marker`: proof that something unpickled user data."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_pickled_inputs_file_is_refused_without_unpickling(exported_version, tmp_path):
    marker = tmp_path / "unpickled"
    hostile = tmp_path / "hostile.npz"
    array = np.empty(1, dtype=object)
    array[0] = _Payload(marker)
    np.savez(hostile, features=array)
    assert pickle.dumps(_Payload(marker))  # the payload is a real pickle
    result = CliRunner().invoke(cli, ["check", str(exported_version), "--no-server", "--inputs", str(hostile)])
    assert result.exit_code == 2, result.output
    assert not marker.exists()
    _assert_one_line_error(result.output, str(hostile))


def _assert_one_line_error(output: str, names: str):
    lines = [ln for ln in output.splitlines() if ln.startswith("Error:")]
    assert len(lines) == 1, output
    assert names in lines[0], lines[0]
    assert "Traceback" not in output


def _corrupt_saved_model(version, tmp_path, how):
    copy = tmp_path / "copy" / "1"
    shutil.copytree(version, copy)
    graph = copy / "saved_model.pb"
    graph.write_bytes(graph.read_bytes()[: graph.stat().st_size // 3] if how == "truncated" else b"\x08garbage" * 50)
    for tflite in copy.glob("*.tflite"):
        tflite.unlink()
    return copy


@pytest.mark.parametrize(
    "artifact",
    [
        "truncated SavedModel",
        "garbage SavedModel",
        "truncated TFLite",
        "inputs one column too wide",
        "inputs of the wrong rank",
    ],
)
def test_bad_artifacts_give_one_line_and_exit_2(exported_version, tmp_path, artifact):
    args = ["check", str(exported_version), "--no-server", "--no-convert"]
    named = None
    if artifact.endswith("SavedModel"):
        copy = _corrupt_saved_model(exported_version, tmp_path, artifact.split()[0])
        args[1] = named = str(copy)
    elif artifact == "truncated TFLite":
        cut = tmp_path / "cut.tflite"
        data = (exported_version / "model.tflite").read_bytes()
        cut.write_bytes(data[: len(data) // 2])
        args += ["--tflite", str(cut)]
        named = str(cut)
    else:
        with np.load(exported_version / "assets.extra" / "heldout.npz", allow_pickle=False) as data:
            features = data["features"][:5]
        wrong = np.hstack([features, features[:, :1]]) if "wide" in artifact else features.ravel()
        path = tmp_path / "inputs.npz"
        np.savez(path, features=wrong)
        args += ["--inputs", str(path)]
        named = "features"
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, result.output
    _assert_one_line_error(result.output, named)


def _address(hex_address: str) -> str:
    """/proc/net/tcp{,6}'s hex address (32-bit words in host order) as text; v4-mapped shown as IPv4."""
    raw = b"".join(bytes.fromhex(hex_address[i : i + 8])[::-1] for i in range(0, len(hex_address), 8))
    ip = ipaddress.ip_address(raw)
    return str(getattr(ip, "ipv4_mapped", None) or ip)


def _listening_addresses(port: int) -> set:
    """Local addresses with a TCP socket listening on `port`."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            address, hex_port = fields[1].split(":")
            if fields[3] == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                found.add(_address(address))
    return found


EVERY_INTERFACE = {"0.0.0.0", "::"}  # grpc may bind 0.0.0.0 as a dual-stack [::] socket
LOOPBACK = {"127.0.0.1"}


def test_python_m_serving_listens_on_all_interfaces_like_the_real_binary(fault_server):
    """tensorflow_model_server binds gRPC to 0.0.0.0:PORT and REST to every interface; so does ours."""
    for port in (fault_server.grpc_port, fault_server.rest_port):
        addresses = _listening_addresses(port)
        assert addresses and addresses <= EVERY_INTERFACE, (port, addresses)
    assert any(f"Running gRPC ModelServer at 0.0.0.0:{fault_server.grpc_port}" in ln for ln in fault_server.log_lines())


def test_servers_tfkit_launches_listen_on_loopback_only(logreg_server):
    """LocalServer (behind tfkit check and run) keeps the server off other machines' reach."""
    for port in (logreg_server.grpc_port, logreg_server.rest_port):
        assert _listening_addresses(port) == LOOPBACK, port


@pytest.mark.parametrize(
    "host_args, expected", [([], LOOPBACK), (["--host", "0.0.0.0"], EVERY_INTERFACE)], ids=["default", "--host 0.0.0.0"]
)
def test_tfkit_serve_listens_on_loopback_unless_told_otherwise(exported_version, host_args, expected):
    grpc_port, rest_port = free_port(), free_port()
    command = [
        sys.executable,
        "-m",
        "toolkit",
        "serve",
        str(exported_version.parent),
        "--port",
        str(grpc_port),
        "--rest-port",
        str(rest_port),
        *host_args,
    ]
    proc = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    try:
        for line in proc.stdout:
            if "Exporting HTTP/REST API" in line:
                break
        else:
            pytest.fail(f"tfkit serve exited with {proc.wait()} before serving")
        for port in (grpc_port, rest_port):
            addresses = _listening_addresses(port)
            assert addresses and addresses <= expected, (port, addresses)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


@pytest.mark.parametrize("host, expected", [("127.0.0.1", LOOPBACK), ("0.0.0.0", EVERY_INTERFACE)])
def test_the_server_check_and_run_start_listens_where_host_says(exported_version, host, expected):
    from toolkit.serve import BackgroundServer

    server = BackgroundServer(
        [f"--model_name={exported_version.parent.name}", f"--model_base_path={exported_version.parent}"], host=host
    )
    try:
        local = server.wait()
        for port in (local.grpc_port, local.rest_port):
            addresses = _listening_addresses(port)
            assert addresses and addresses <= expected, (port, addresses)
    finally:
        server.stop()
