"""Counting work in progress, so that a stop or an unload can wait for none."""

import threading


class InFlight:
    """How many requests are using something (a server, a servable); `with` counts one."""

    def __init__(self):
        self._count = 0
        self._idle = threading.Condition(threading.Lock())

    def add(self) -> None:
        with self._idle:
            self._count += 1

    def done(self) -> None:
        """End an add()."""
        with self._idle:
            self._count -= 1
            if not self._count:
                self._idle.notify_all()

    def count(self) -> int:
        """How many are in progress now."""
        return self._count

    def __enter__(self):
        self.add()

    def __exit__(self, *exc):
        self.done()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until the count is zero (or `timeout` seconds pass); whether it is."""
        with self._idle:
            return self._idle.wait_for(lambda: self._count == 0, timeout)
