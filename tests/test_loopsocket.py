"""ipc/loopsocket.py: a ZeroMQ socket drained on the event loop, over a real ipc:// socket.
ZMQ_FD is edge-triggered, so the risk is a message that is there but never read: sends and
receives are interleaved from two tasks, and every reply must arrive, in order. (libzmq rarely
lets a send take the edge, so a run passing does not prove that case; the code handles it as
zmq_getsockopt(3) prescribes.)"""
import asyncio
import threading

import zmq

from ipc.loopsocket import LoopSocket


def echo_peer(ctx: zmq.Context, endpoint: str, count: int) -> threading.Thread:
    def run() -> None:
        peer = ctx.socket(zmq.DEALER)
        peer.connect(endpoint)
        peer.send(b"hello")
        for _ in range(count):
            peer.send(peer.recv())
        peer.close(linger=1000)
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_every_reply_arrives_while_another_task_sends(tmp_path):
    endpoint = f"ipc://{tmp_path / 'work.sock'}"
    count = 2000
    ctx = zmq.Context()

    async def main() -> list[int]:
        router = ctx.socket(zmq.ROUTER)
        router.bind(endpoint)
        sock = LoopSocket(router)
        peer = echo_peer(ctx, endpoint, count)
        got: list[int] = []
        room = asyncio.Event()

        async def sender(identity: bytes) -> None:
            for i in range(count):
                while i - len(got) >= 4:  # a few in flight, so replies land while we send
                    room.clear()
                    await room.wait()
                assert sock.send(identity, str(i).encode())
                await asyncio.sleep(0)

        task = None
        async for identity, payload in sock.messages():
            if payload == b"hello":
                task = asyncio.create_task(sender(identity))
                continue
            got.append(int(payload))
            room.set()
            if len(got) == count:
                break
        await task
        sock.close()
        router.close(linger=0)
        peer.join(10)
        return got

    try:
        got = asyncio.run(asyncio.wait_for(main(), 60))
    finally:
        ctx.term()
    assert got == list(range(count))


def test_a_send_to_a_peer_that_is_not_there_is_refused_not_raised(tmp_path):
    ctx = zmq.Context()

    async def main() -> bool:
        router = ctx.socket(zmq.ROUTER)
        router.setsockopt(zmq.ROUTER_MANDATORY, 1)
        router.bind(f"ipc://{tmp_path / 'w.sock'}")
        sock = LoopSocket(router)
        ok = sock.send(b"nobody", b"job")
        sock.close()
        router.close(linger=0)
        return ok

    try:
        assert asyncio.run(main()) is False
    finally:
        ctx.term()
