"""A long-lived thread that runs the supervisor's blocking file work (the outbox) off its
event loop, and group commit on it. The lane is started once and lives as long as the daemon:
no thread is started per call. Its thread is a daemon thread, never joined at exit, so a slow
disk cannot hold the daemon's exit up (what must reach the disk is awaited by the shutdown)."""
import asyncio
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


class Lane:
    """One thread taking calls from a queue, oldest first."""

    def __init__(self, name: str) -> None:
        self._calls: queue.SimpleQueue = queue.SimpleQueue()
        threading.Thread(target=self._work, name=name, daemon=True).start()

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


class Batched:
    """Group commit on a lane: calls made while a batch is being written wait and go
    together in the next one, so a burst of results shares its fsyncs. `fn` takes a list of
    items and returns one result per item (an exception instance fails that item alone); an
    error it raises fails every item of that batch."""

    def __init__(self, lane: Lane, fn: Callable[[list], list]) -> None:
        self._lane, self._fn = lane, fn
        self._waiting: list[tuple[Any, asyncio.Future]] = []
        self._busy = False

    def run(self, item: Any) -> "asyncio.Future[Any]":
        fut = asyncio.get_running_loop().create_future()
        self._waiting.append((item, fut))
        if not self._busy:
            self._flush()
        return fut

    def _flush(self) -> None:
        batch, self._waiting = self._waiting, []
        self._busy = True
        self._lane.run(self._fn, [item for item, _ in batch]).add_done_callback(
            lambda done: self._settle(batch, done))

    def _settle(self, batch: list[tuple[Any, asyncio.Future]], done: asyncio.Future) -> None:
        self._busy = False
        error = None if done.cancelled() else done.exception()
        for i, (_, fut) in enumerate(batch):
            if fut.done():
                continue
            if done.cancelled():
                fut.cancel()
            elif error is not None:
                fut.set_exception(error)
            elif isinstance(outcome := done.result()[i], BaseException):
                fut.set_exception(outcome)
            else:
                fut.set_result(outcome)
        if self._waiting:
            self._flush()
