"""Faults on disk while serving: deleted and broken versions, names that look like paths.

One server (`fault_server`) polls a writable base every second; the tests run
in file order and each adds the next version number.
"""

import shutil
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request

import grpc
import numpy as np
import pytest

from reliability.faults import BROKEN_KINDS, publish_broken_version

from reliability_helpers import MODEL, model_status, predict
from support import wait_for

FEATURES = np.array([[1.5, -2.0], [-3.0, 0.25], [0.0, 0.0]], dtype=np.float32)


def _next_version(server, base) -> int:
    """A number no version ever had, on disk or in the server's memory."""
    on_disk = [int(p.name) for p in (base / MODEL).iterdir() if p.name.isdigit()]
    return max(on_disk + list(model_status(server.grpc_target))) + 1


def _add_copy_of_v1(base, version: int):
    folder = base / MODEL / str(version)
    shutil.copytree(base / MODEL / "1", base / MODEL / f".staging-{version}")
    (base / MODEL / f".staging-{version}").rename(folder)  # appears whole, as an export does
    return folder


def _assert_answers_correctly(server, reference, version):
    answered, outputs = predict(server.grpc_target, FEATURES[:, : reference.num_features])
    assert answered == version
    assert reference.mismatch(1, FEATURES[:, : reference.num_features], outputs) is None


def test_deleted_served_version_is_unloaded_and_the_previous_one_takes_over(fault_server, fault_base, reference):
    version = _next_version(fault_server, fault_base)
    folder = _add_copy_of_v1(fault_base, version)
    wait_for(
        lambda: model_status(fault_server.grpc_target).get(version, ("",))[0] == "AVAILABLE",
        what=f"version {version} AVAILABLE",
    )
    wait_for(lambda: model_status(fault_server.grpc_target)[1][0] == "END", what="version 1 unloaded")
    _assert_answers_correctly(fault_server, reference, version)

    shutil.rmtree(folder)
    # Latest policy: version 1 is the newest on disk again, so it is reloaded; the deleted one unloaded.
    status = wait_for(
        lambda: (s := model_status(fault_server.grpc_target))[version][0] == "END" and s[1][0] == "AVAILABLE" and s,
        what="deleted version unloaded, version 1 back",
    )
    assert status[version][1] == 0  # unloaded, not failed
    _assert_answers_correctly(fault_server, reference, 1)
    assert fault_server.process.poll() is None


@pytest.mark.parametrize("kind", BROKEN_KINDS)
def test_broken_version_is_never_served(fault_server, fault_base, reference, permission_prefix, kind):
    if kind == "unreadable folder" and permission_prefix is None:
        pytest.skip("running as root without setpriv: no way to make a folder unreadable to the server")
    version = _next_version(fault_server, fault_base)
    publish_broken_version(fault_base / MODEL, kind, version, source=1)
    try:
        state = wait_for(
            lambda: model_status(fault_server.grpc_target).get(version), what=f"a status for broken version {version}"
        )
        state = wait_for(
            lambda: (s := model_status(fault_server.grpc_target)[version])[0] == "END" and s,
            what=f"broken version {version} to fail",
        )
        code, message = state[1], state[2]
        assert code != grpc.StatusCode.OK.value[0] and message, state
        if kind == "unreadable folder":
            assert "permission" in message.lower(), message
        # The previous version keeps answering, and the broken one is never reachable.
        _assert_answers_correctly(fault_server, reference, 1)
        with pytest.raises(grpc.RpcError) as err:
            predict(fault_server.grpc_target, FEATURES[:, : reference.num_features], version=version)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
    finally:
        (fault_base / MODEL / str(version)).chmod(0o755)


PATH_LIKE_NAMES = [
    "../x",
    "x",
    "..",
    ".",
    "logreg/../x",
    "logreg/../logreg",
    "/etc",
    "logreg/1",
    "%2e%2e%2fx",
    "logreg\x00",
    "",
]


def test_request_names_never_reach_the_filesystem(fault_server, fault_base, reference):
    """Valid models sit on disk next to the served one; a request can still reach only `logreg`."""
    shutil.copytree(fault_base / MODEL / "1", fault_base / "x" / "1")
    shutil.copytree(fault_base / MODEL / "1", fault_base.parent / "x" / "1", dirs_exist_ok=True)
    features = FEATURES[:, : reference.num_features]
    for name in PATH_LIKE_NAMES:
        with pytest.raises(grpc.RpcError) as err:
            predict(fault_server.grpc_target, features, name=name)
        assert err.value.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT), name
        with pytest.raises(grpc.RpcError) as err:
            model_status(fault_server.grpc_target, name=name)
        assert err.value.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT), name
        quoted = urllib.parse.quote(name, safe="")
        with pytest.raises(urllib.error.HTTPError) as http_err:
            urllib.request.urlopen(f"{fault_server.rest_url}/v1/models/{quoted}", timeout=10)
        assert http_err.value.code in (400, 404), name
    # A version that exists on disk but is not loaded is not loaded on request either.
    for version in (0, 2, 99, 2**63 - 1):
        with pytest.raises(grpc.RpcError) as err:
            predict(fault_server.grpc_target, features, version=version)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
    _assert_answers_correctly(fault_server, reference, 1)


def test_break_command_publishes_a_version_the_server_refuses(fault_server, fault_base, reference):
    """`python -m reliability break` does from outside what the tests above do in-process."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "reliability",
            "break",
            "--model-base-path",
            str(fault_base),
            "--kind",
            "garbage saved_model.pb",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    version = int(done.stdout.split()[1].rsplit("/", 1)[1])
    state = wait_for(
        lambda: (s := model_status(fault_server.grpc_target).get(version)) and s[0] == "END" and s,
        what=f"broken version {version} to fail",
    )
    assert state[1] != 0 and state[2]
    _assert_answers_correctly(fault_server, reference, 1)
