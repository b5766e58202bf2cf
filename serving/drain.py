"""Graceful drain of the gRPC endpoint: answer every call taken, refuse the rest, lose none.

On SIGTERM the server (serving.server) keeps serving for a grace period, its
health service answering NOT_SERVING so that load balancers stop routing to
it, and then calls `Drain.begin()`: from then on a call the server takes is
refused UNAVAILABLE, while every call taken before runs to its end.
`wait_answered()` returns once all of those are answered.

Why the process then exits without grpc's own `Server.stop()`: grpc core's
shutdown ends CANCELLED every call that has reached it but that Python has not
taken yet, and every call that arrives before the client has read its GOAWAY
(grpc/grpc#41785). Clients do not retry CANCELLED. Closing the connections with
the process ends those calls UNAVAILABLE instead, which is what a client's
retry policy retries, as it does our own refusals.

A call counts from the first line of its handler (`admit`), which runs as soon
as gRPC hands the call over, before its request has arrived (see
serving.grpc_service), until its RPC has ended, i.e. its status was handed to
the transport (grpc's done callback). Both run on the event loop's thread, so
the counts need no lock.
"""

import time

SHUTTING_DOWN = "The server is shutting down"
# How long no admitted call may be left before the drain counts as done: a call
# admitted at the instant begin() ran is counted a moment later, and the last
# answers need a moment to leave the machine before the process closes its sockets.
SETTLE_S = 0.1
_POLL_S = 0.01


class Drain:
    """Counts the gRPC calls the server has taken and not yet answered; refuses new ones once begun."""

    def __init__(self):
        self._draining = False
        self._taken = 0
        self._answered = 0

    def admit(self, context) -> bool:
        """Count the call of `context` (a grpc.aio ServicerContext) until its RPC ends (True), or,
        once the drain has begun, do not: the call is to be refused. Call on the event loop."""
        if self._draining:
            return False
        self._taken += 1
        context.add_done_callback(self._answer)
        return True

    def _answer(self, _context) -> None:
        self._answered += 1

    def in_flight(self) -> int:
        """Calls taken and not yet answered (a gauge: read from any thread)."""
        return self._taken - self._answered

    def begin(self) -> int:
        """Refuse the calls taken from now on; how many taken calls are still unanswered."""
        self._draining = True
        return self.in_flight()

    def wait_answered(self, timeout: float) -> bool:
        """Wait until every call admitted before begin() is answered (and none has been left for
        SETTLE_S); False when `timeout` ran out first."""
        deadline = time.monotonic() + timeout
        idle_since = None
        while True:
            now = time.monotonic()
            if self.in_flight():
                idle_since = None
            elif idle_since is None:
                idle_since = now
            elif now - idle_since >= SETTLE_S:
                return True
            if now >= deadline:
                return False
            time.sleep(_POLL_S)
