"""A ZeroMQ socket on an asyncio loop, read by draining: one wake-up reads every message that
is waiting. Used for the supervisor's work socket, which carries two messages per request.

Why not zmq.asyncio there: it makes a future per message received and per message sent, and
a loop callback per socket event (a py-spy profile put ~15 % of the supervisor's CPU in it at
4 workers). Here a receive is a plain NOBLOCK call and a send never waits.

ZMQ_FD is edge-triggered (zmq_getsockopt(3)): after any operation on the socket, including a
send, the readable edge may already have been consumed, so the reader looks at ZMQ_EVENTS
before it sleeps, and every send wakes it to look again."""
import asyncio
from collections.abc import AsyncIterator

import zmq


class LoopSocket:
    def __init__(self, sock: zmq.Socket) -> None:
        self.sock = sock
        self._look = asyncio.Event()
        self._fd = sock.getsockopt(zmq.FD)
        asyncio.get_running_loop().add_reader(self._fd, self._look.set)

    async def messages(self) -> AsyncIterator[list[bytes]]:
        """Every message, in order, for as long as the socket is open."""
        while True:
            try:
                frames = self.sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                self._look.clear()
                if self.sock.getsockopt(zmq.EVENTS) & zmq.POLLIN:
                    continue
                await self._look.wait()
                continue
            yield frames

    def send(self, *frames: bytes) -> bool:
        """Send without waiting; False when the peer cannot take it (absent, unroutable, HWM)."""
        try:
            self.sock.send_multipart(list(frames), zmq.NOBLOCK)
            return True
        except zmq.ZMQError:
            return False
        finally:
            self._look.set()

    def close(self) -> None:
        asyncio.get_running_loop().remove_reader(self._fd)
