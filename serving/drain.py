"""Graceful gRPC drain: finish every call the server accepted, refuse the rest.

grpcio's `Server.stop(grace)` shuts gRPC core down at once, and core then
cancels (status CANCELLED) every call that has reached the server but that
Python has not taken yet. grpcio takes calls from core one at a time on its
event-loop thread (serving.grpc_loop), which competes for the GIL with the
busy workers, so under load such calls are common. The server therefore
drains in two phases:

1. `DrainingExecutor.begin_drain()`: calls taken from now on are answered
   UNAVAILABLE by the servicers (`refusing()` is true on their thread); calls
   taken before keep running, including those still queued for a worker.
   Core keeps handing calls over meanwhile, so none waits there to be cancelled.
2. `wait_drained(timeout)` returns once every call taken before the drain is
   answered and for QUIET_S no call has arrived or ended; only then does the
   caller stop grpc's server. The quiet period lets Python take (and refuse)
   the calls that clients sent while the last admitted calls finished, which
   would otherwise still sit in core's queue. What remains is core's own race:
   a call that arrives in the instant core stops is cancelled; later ones find
   the listening socket closed (UNAVAILABLE).

A taken call is one the server hands to the pool (`submit`), which it does as
soon as core gives it the call, or one it serves on the event loop: a small
Predict, checked with `refuse_inline` and answered before the loop does
anything else, or one waiting for its batch, counted with `admit`/`finish`.
A call's count ends once its handler returns; its status follows on the
loop, within the quiet period.
"""

import threading
import time
from concurrent import futures

_thread_state = threading.local()

SHUTTING_DOWN = "The server is shutting down"
# Once idle, how long no call may arrive or end before core is stopped (see above).
QUIET_S = 0.1


def refusing() -> bool:
    """True inside a gRPC call the server accepted after its drain began."""
    return getattr(_thread_state, "refuse", False)


class DrainingExecutor(futures.ThreadPoolExecutor):
    """The gRPC server's worker pool, counting the calls accepted before a drain.

    `submit` runs on the event-loop thread that takes every call, the busiest
    holder of the GIL under load, so its normal path is kept to one
    uncontended lock.
    """

    def __init__(self, max_workers: int, thread_name_prefix: str = ""):
        super().__init__(max_workers=max_workers, thread_name_prefix=thread_name_prefix)
        self._idle = threading.Condition(threading.Lock())
        self._draining = False
        self._admitted = 0  # accepted before the drain and not yet answered
        self._last_activity = 0.0  # time.monotonic() of the latest call accepted or ended while draining

    def submit(self, fn, /, *args, **kwargs):
        if not self.admit():
            return super().submit(_run_refused, fn, *args, **kwargs)
        try:
            return super().submit(self._run_admitted, fn, *args, **kwargs)
        except RuntimeError:  # the pool is shut down: the call will not run
            self.finish()
            raise

    def _run_admitted(self, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        finally:
            self.finish()

    def admit(self) -> bool:
        """Count a call as accepted (True) until finish(), or, once the drain has
        begun, note the activity and return False: the call is to be refused.
        The pool does this for what it runs; a call served on the event loop
        calls it itself."""
        with self._idle:
            if self._draining:
                self._last_activity = time.monotonic()
                return False
            self._admitted += 1
            return True

    def refuse_inline(self) -> bool:
        """For a call the event loop serves without waiting (so there is nothing
        to count): True (refuse it) once the drain has begun, noted as activity."""
        if not self._draining:
            return False
        with self._idle:
            self._last_activity = time.monotonic()
        return True

    def finish(self) -> None:
        """An admitted call is answered."""
        with self._idle:
            self._admitted -= 1
            if self._draining:
                self._last_activity = time.monotonic()
                if not self._admitted:
                    self._idle.notify_all()

    def begin_drain(self) -> int:
        """From now on, accepted calls are marked to be refused; how many
        accepted calls are still unanswered at this moment."""
        with self._idle:
            self._draining = True
            return self._admitted

    def in_flight(self) -> int:
        """Calls accepted and not yet answered (read without the lock: a gauge)."""
        return self._admitted

    def wait_drained(self, timeout: float) -> bool:
        """Wait until every call accepted before begin_drain() is answered and for
        QUIET_S no call has arrived or ended; False when `timeout` ran out first."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while True:
                now = time.monotonic()
                quiet_for = now - self._last_activity
                if not self._admitted and quiet_for >= QUIET_S:
                    return True
                if now >= deadline:
                    return False
                # Woken when the last admitted call ends; otherwise when the quiet
                # period would be over.
                wait = QUIET_S - quiet_for if not self._admitted else deadline - now
                self._idle.wait(min(wait, deadline - now))


def _run_refused(fn, *args, **kwargs):
    _thread_state.refuse = True
    try:
        return fn(*args, **kwargs)
    finally:
        _thread_state.refuse = False
