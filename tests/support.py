"""Helpers every test group shares: waiting for a condition, a free port, a
server's Prometheus page, and the barriers a test waits on before it asserts
that something did NOT happen (so that it never passes only because the
server had not looked yet).

Barriers, all measured by the server under test:
- `poll_count` / `wait_for_polls`: completed file-system or config-file
  polling passes (`:tfkit:serving:poll_count`);
- `grpc_calls_in_flight`: gRPC calls accepted and not yet answered;
- `grpc_calls_in_flight_at_shutdown`: the same, counted by the server when
  its drain began refusing new calls (its "Shutting down" log line, at the end
  of the grace period after SIGTERM);
- `in_flight_at_sigterm`: gRPC calls and HTTP requests the server had taken
  and not yet answered when SIGTERM arrived (its "Draining" log line);
- `unread_bytes`: bytes a client sent that the server has not read yet.
"""

import http.client
import json
import re
import time

from toolkit.serve import free_port  # noqa: F401  (the suite's one free_port, re-exported)

from tf_serving_testdata import TESTDATA

PROMETHEUS_PATH = "/monitoring/prometheus/metrics"  # what MONITORING_CONFIG says
MONITORING_CONFIG = TESTDATA / "monitoring_config.txt"
MONITORING_FLAG = f"--monitoring_config_file={MONITORING_CONFIG}"


def tflite_runtimes(file: str) -> set[str]:
    """The runtimes tfkit check makes of one TFLite file: one per LiteRT op resolver."""
    return {f"tflite:{file}", f"tflite:{file}[builtin]", f"tflite:{file}[ref]"}


def wait_for(condition, timeout: float = 60.0, what: str = "condition", interval: float = 0.05):
    """Call `condition()` until it returns something truthy and return that;
    AssertionError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)  # pacing the polling, not waiting for an outcome


class Http:
    """A tiny HTTP client that returns (status, headers, body) and never raises on 4xx/5xx."""

    def __init__(self, base_url: str):
        host, port = base_url.removeprefix("http://").split(":")
        self.host, self.port = host, int(port)

    def request(self, method: str, path: str, body=None, headers=None):
        conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
        try:
            if isinstance(body, (dict, list)):
                body = json.dumps(body)
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            conn.close()

    def json(self, method: str, path: str, body=None, headers=None):
        status, headers, data = self.request(method, path, body, headers)
        return status, json.loads(data)


_SAMPLE = re.compile(r"^(?P<name>[^{\s]+)\{(?P<labels>[^}]*)\} (?P<value>\S+)$")


class MetricsSnapshot:
    """One scrape of a server's Prometheus page (it runs with MONITORING_FLAG):
    `snapshot.value(name, **labels)`."""

    def __init__(self, rest_url: str):
        status, headers, body = Http(rest_url).request("GET", PROMETHEUS_PATH)
        assert status == 200 and headers["Content-Type"] == "text/plain"
        self.text = body.decode()
        self.samples = {}
        for line in self.text.splitlines():
            if line.startswith("#"):
                continue
            match = _SAMPLE.match(line)
            assert match, f"not Prometheus text: {line!r}"
            labels = frozenset(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match["labels"]))
            self.samples[(match["name"], labels)] = float(match["value"])

    def value(self, name: str, **labels) -> float:
        return self.samples.get((name, frozenset(labels.items())), 0.0)


def poll_count(rest_url: str, source: str) -> int:
    """Completed polling passes of `source` ("file_system" or "config_file") so far."""
    return int(MetricsSnapshot(rest_url).value(":tfkit:serving:poll_count", source=source))


def wait_for_polls(rest_url: str, source: str, seen: int, timeout: float = 60.0) -> None:
    """Wait until two more passes than `seen` (read before the change under test)
    have completed: the second of them began after the change."""
    wait_for(lambda: poll_count(rest_url, source) >= seen + 2, timeout, f"two more {source} polls than {seen}")


def grpc_calls_in_flight(rest_url: str) -> int:
    """gRPC calls the server has accepted and not yet answered."""
    return int(MetricsSnapshot(rest_url).value(":tfkit:serving:grpc_calls_in_flight"))


_SHUTDOWN_LINE = re.compile(r"Shutting down: .*\((\d+) gRPC calls in flight\)")


def grpc_calls_in_flight_at_shutdown(log_lines) -> int:
    """What the server counted in flight when its drain began (AssertionError if it never logged it)."""
    for line in log_lines:
        match = _SHUTDOWN_LINE.search(line)
        if match:
            return int(match[1])
    raise AssertionError("the server never logged its 'Shutting down: ...' line")


_DRAINING_LINE = re.compile(r"Draining: .*\((\d+) gRPC calls and (\d+) HTTP requests in flight\)")


def in_flight_at_sigterm(log_text: str) -> tuple[int, int]:
    """(gRPC calls, HTTP requests) the server counted in flight when SIGTERM arrived."""
    match = _DRAINING_LINE.search(log_text)
    assert match, "the server never logged its 'Draining: ...' line"
    return int(match[1]), int(match[2])


def unread_bytes(sock) -> int | None:
    """Bytes sent on `sock` that its peer (a server on this machine) has not read
    yet: the receive queue of the peer's socket in /proc/net/tcp(6); None when
    that socket is not found."""
    local, peer = sock.getsockname()[1], sock.getpeername()[1]
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as handle:
            for line in handle.readlines()[1:]:
                fields = line.split()
                ports = int(fields[1].rsplit(":", 1)[1], 16), int(fields[2].rsplit(":", 1)[1], 16)
                if ports == (peer, local):
                    return int(fields[4].split(":")[1], 16)
    return None
