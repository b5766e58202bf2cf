"""The gRPC endpoint: a `grpc.aio` server on its own event-loop thread.

Why asyncio rather than grpcio's thread-pool server: there, one thread takes
every call from gRPC core and hands it to a worker thread, so each request
costs two GIL hand-offs between busy threads. An aio server takes calls on
its event loop, and a coroutine handler (our small Predicts) runs right
there, start to finish, with no hand-off. Measured side by side against null
servers of both kinds, that took our batch-1 Predict from ~0.5 to ~0.7 of
the null server at 8 and 32 clients (README, Performance).

The model work of every other method, and of large Predicts, runs on the
`--grpc_max_threads` pool as before; a batched Predict waits for its batch on
the loop without holding a thread. The rest of the server is synchronous, so
this class drives the loop from the caller's thread and exposes the few
grpc.Server methods the server uses.
"""

import asyncio
import threading
from concurrent import futures


class LoopServer:
    """A grpc.aio.Server running on a private event loop, driven synchronously."""

    def __init__(self, pool: futures.ThreadPoolExecutor, options: list):
        import grpc

        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="grpc-loop", daemon=True)
        self._thread.start()

        async def build():  # aio objects bind to the loop they are made on
            return grpc.aio.server(migration_thread_pool=pool, options=options)

        self._server = self._run(build())

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The event loop the handlers run on."""
        return self._loop

    def _run(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def _on_loop(self, fn, *args):
        async def call():
            return fn(*args)

        return self._run(call())

    def add_generic_rpc_handlers(self, handlers) -> None:
        self._on_loop(self._server.add_generic_rpc_handlers, handlers)

    def add_registered_method_handlers(self, service_name: str, handlers: dict) -> None:
        self._on_loop(self._server.add_registered_method_handlers, service_name, handlers)

    def add_insecure_port(self, address: str) -> int:
        return self._on_loop(self._server.add_insecure_port, address)

    def add_secure_port(self, address: str, credentials) -> int:
        return self._on_loop(self._server.add_secure_port, address, credentials)

    def start(self) -> None:
        self._run(self._server.start())

    def stop(self, grace: float) -> None:
        """Stop serving (calls still running get `grace` seconds), then end the loop."""
        try:
            self._run(self._server.stop(grace))
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop.close()
