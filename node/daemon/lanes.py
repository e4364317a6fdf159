"""Long-lived threads that run the supervisor's blocking calls (HTTP, outbox files) off its
event loop. A lane is started once and lives as long as the daemon: no thread is started per
call, and each thread keeps its own keep-alive connection to the coordinator (node/coordinator.py
gives each thread one). The threads are daemon threads, never joined at exit, so a long poll
in progress cannot hold the daemon's exit up."""
import asyncio
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


class Lane:
    """`threads` threads taking calls from one queue, oldest first."""

    def __init__(self, name: str, threads: int = 1) -> None:
        self._calls: queue.SimpleQueue = queue.SimpleQueue()
        for i in range(threads):
            threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True).start()

    def run(self, fn: Callable[..., T], *args: Any) -> "asyncio.Future[T]":
        """Queue `fn(*args)`; the future settles on the calling loop with its result or error."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future = loop.create_future()
        self._calls.put((loop, fut, fn, args))
        return fut

    def _work(self) -> None:
        while True:
            loop, fut, fn, args = self._calls.get()
            try:
                outcome: tuple = (fut.set_result, fn(*args))
            except BaseException as e:  # handed to the awaiting task, which decides
                outcome = (fut.set_exception, e)
            try:
                loop.call_soon_threadsafe(_settle, fut, *outcome)
            except RuntimeError:
                return  # the loop is gone: the daemon is exiting

def _settle(fut: asyncio.Future, setter: Callable[[Any], None], value: Any) -> None:
    if not fut.done():  # cancelled meanwhile (shutdown)
        setter(value)
