"""The HTTP transport under the REST API, behaving as TF Serving's evhttp server.

Sockets (every interface, IPv4 and IPv6, as evhttp binds; or one address),
a thread per connection (idle keep-alive connections cost nothing else; they
close after two idle minutes), request bodies (Content-Length or chunked,
gzip decoded, capped), responses without a Server header, libevent's HTML page
for requests nobody handles, and a stop that drains: it stops accepting,
answers the connections already queued, then waits for requests in flight.

What a request means is the application's business (see `HttpApp`);
serving.rest_api is the one this server runs.
"""

from __future__ import annotations

import http.server
import socket
import socketserver
import threading
import time
import zlib
from typing import Protocol

from serving.inflight import InFlight

# Request bodies above this many bytes (after gzip decoding) are refused;
# it is also TF Serving's cap on a gzip-decoded body (ZLib::kMaxUncompressedBytes).
MAX_BODY_BYTES = 100 * 1024 * 1024
_IDLE_CONNECTION_TIMEOUT_S = 120
# While stopping, how long the server waits for more connections after
# taking some before it closes its listening socket.
_BACKLOG_QUIET_S = 0.05


class Reply:
    """An HTTP response: status, headers, body."""

    __slots__ = ("status", "headers", "body")

    def __init__(self, status=200, headers=(), body=b""):
        self.status = status
        self.headers = list(headers)
        self.body = body


def libevent_error(status: int, reason: str) -> Reply:
    """evhttp_send_error's answer, as for requests nobody handles."""
    body = (
        f"<HTML><HEAD>\n<TITLE>{status} {reason}</TITLE>\n</HEAD><BODY>\n<H1>{reason}</H1>\n</BODY></HTML>\n"
    ).encode()
    return Reply(status, [("Content-Type", "text/html; charset=ISO-8859-1")], body)


class HttpApp(Protocol):
    """What the transport asks of the application it serves."""

    def handle(self, method: str, path: str, headers, body: bytes) -> Reply:
        """The answer to one request (`path` as sent, query included)."""

    def body_too_large(self, limit: int) -> Reply:
        """The answer to a request whose body exceeds `limit` bytes (413)."""

    def close(self) -> None:
        """Release the application's resources once the server has drained."""


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = _IDLE_CONNECTION_TIMEOUT_S
    # TCP_NODELAY: headers and body go out in two writes, and with Nagle the
    # body waited for the client's delayed ACK (~40 ms per keep-alive request).
    disable_nagle_algorithm = True
    server: _HTTPServer

    def log_message(self, format, *args):  # per-request logging is off, as in TF Serving
        pass

    def send_response(self, code, message=None):
        # evhttp sends no Server header; keep Date like it does.
        self.send_response_only(code, message)
        self.send_header("Date", self.date_time_string())

    def handle_one_request(self):
        # A client vanishing mid-request is its business, not a server error.
        try:
            super().handle_one_request()
        except (ConnectionError, TimeoutError):
            self.close_connection = True

    def _read_body(self) -> bytes | None:
        """The request body (gzip decoded); None after answering 413 or 400."""
        limit = self.server.max_body_bytes
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks, total = [], 0
            while True:
                size_line = self.rfile.readline(1024)
                try:
                    size = int(size_line.split(b";")[0].strip(), 16)
                except ValueError:
                    self._send(libevent_error(400, "Bad Request"))
                    return None
                if size == 0:
                    while self.rfile.readline(65537).strip():
                        pass  # trailers
                    break
                total += size
                if total > limit:
                    self._too_large()
                    return None
                chunks.append(self.rfile.read(size))
                self.rfile.readline(3)
            body = b"".join(chunks)
        else:
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                self._send(libevent_error(400, "Bad Request"))
                return None
            if length < 0:
                self._send(libevent_error(400, "Bad Request"))
                return None
            if length > limit:
                self._too_large()
                return None
            body = self.rfile.read(length) if length else b""
        if "gzip" in self.headers.get("Content-Encoding", ""):
            body = self._gunzip(body, limit)
        return body

    @staticmethod
    def _gunzip(body: bytes, limit: int) -> bytes:
        # Like net_http: a body that fails to decode (or decodes past the cap)
        # reads as empty, and the JSON parser reports an empty document.
        try:
            inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
            out = inflater.decompress(body, limit + 1)
            return b"" if len(out) > limit else out
        except zlib.error:
            return b""

    def _too_large(self) -> None:
        self.close_connection = True  # the unread body cannot be skipped safely
        self._send(self.server.app.body_too_large(self.server.max_body_bytes))

    def _send(self, reply: Reply) -> None:
        self.send_response(reply.status)
        for key, value in reply.headers:
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(reply.body)))
        if self.close_connection or self.server.stopping:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(reply.body)

    def _dispatch(self) -> None:
        with self.server.tracker:
            body = self._read_body()
            if body is not None:
                self._send(self.server.app.handle(self.command, self.path, self.headers, body))

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _dispatch


class _HTTPServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address, family, app: HttpApp, max_body_bytes: int):
        self.address_family = family
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.tracker = InFlight()
        self.stopping = False
        super().__init__(address, _Handler)

    def take_backlog(self) -> int:
        """Take the connections the kernel has already accepted for us (closing the
        listening socket would reset them, cutting their requests off unanswered);
        how many there were."""
        self.socket.setblocking(False)
        taken = 0
        while True:
            try:
                request, address = self.get_request()
            except OSError:  # BlockingIOError: none left
                return taken
            self.process_request(request, address)
            taken += 1

    def server_bind(self):
        if self.address_family == socket.AF_INET6:
            # "::" with IPV6_V6ONLY off takes IPv4 too, as evhttp's bind does.
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = "localhost", self.socket.getsockname()[1]


class HttpServer:
    """A bound HTTP endpoint serving one HttpApp; see `bind`."""

    def __init__(self, httpd: _HTTPServer):
        self._httpd = httpd
        self._thread: threading.Thread | None = None
        self.port = httpd.server_port

    def start(self) -> None:
        """Serve in a background thread (the caller logs "Exporting HTTP/REST API at:...")."""
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.2},
            name="rest-accept",
            daemon=True,
        )
        self._thread.start()

    def begin_drain(self) -> int:
        """From now on every response closes its connection, so that keep-alive clients
        reconnect (through their load balancer, elsewhere); how many requests are in flight."""
        self._httpd.stopping = True
        return self._httpd.tracker.count()

    def stop(self, grace_s: float = 10.0) -> bool:
        """Stop accepting, let in-flight requests finish (up to `grace_s`), close the app.

        Returns False when some request was still running at the deadline.
        """
        httpd = self._httpd
        httpd.stopping = True
        deadline = time.monotonic() + grace_s
        if self._thread is not None:
            httpd.shutdown()
            self._thread.join()
            # Clients refused with "Connection: close" often reconnect at once:
            # answer those too (503) until none arrive for a moment, so that few
            # are left to be reset when the listening socket closes.
            while httpd.take_backlog() and time.monotonic() < deadline:
                time.sleep(_BACKLOG_QUIET_S)
        httpd.server_close()
        drained = httpd.tracker.wait_idle(max(0.0, deadline - time.monotonic()))
        httpd.app.close()
        return drained


def bind(app: HttpApp, port: int, host: str | None = None, max_body_bytes: int = MAX_BODY_BYTES) -> HttpServer:
    """Listen on `port` (0: any free port) for `app`; call .start() next.

    `host`: only this address (None: every interface, as the binary).
    Raises the OSError of the last bind tried when none succeeds.
    """
    binds = (
        ((socket.AF_INET6, "::"), (socket.AF_INET, "0.0.0.0"))
        if host is None
        else ((socket.AF_INET6 if ":" in host else socket.AF_INET, host),)
    )
    for family, address in binds:
        try:
            return HttpServer(_HTTPServer((address, port), family, app, max_body_bytes))
        except OSError as err:
            error = err
            if err.errno == getattr(socket, "EADDRINUSE", 98):
                break
    raise error
