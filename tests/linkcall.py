"""One call through the supervisor's event-loop link (node/daemon/link.py), from a plain test."""
import asyncio

from node.coordinator import Answer, Call
from node.daemon.link import Link


def link_call(url: str, call: Call, timeout: float = 15.0) -> Answer:
    async def go() -> Answer:
        link = Link(url, timeout=timeout)
        try:
            return await link.call(call)
        finally:
            link.close()
    return asyncio.run(go())
