"""node/daemon/lanes.py: calls made while a batch is on the lane go together in the next one,
and each item gets its own outcome."""
import asyncio

from node.daemon.lanes import Batched, Lane


def test_a_burst_goes_in_one_batch_and_each_item_gets_its_own_outcome():
    batches: list[list[int]] = []

    def work(items: list[int]) -> list:
        batches.append(items)
        return [ValueError(f"bad {i}") if i % 2 else i * 10 for i in items]

    async def main() -> list:
        batched = Batched(Lane("test"), work)
        futures = [batched.run(i) for i in range(5)]
        return await asyncio.gather(*futures, return_exceptions=True)

    outcomes = asyncio.run(main())
    assert batches == [[0], [1, 2, 3, 4]]  # the first left at once, the rest waited for it
    assert [o if isinstance(o, int) else str(o) for o in outcomes] == \
        [0, "bad 1", 20, "bad 3", 40]


def test_an_error_raised_fails_every_item_of_its_batch():
    def work(items: list[int]) -> list:
        raise OSError(28, "No space left on device")

    async def main() -> list:
        batched = Batched(Lane("test"), work)
        return await asyncio.gather(batched.run(1), batched.run(2), return_exceptions=True)

    outcomes = asyncio.run(main())
    assert [type(o) for o in outcomes] == [OSError, OSError]
    assert all("No space" in str(o) for o in outcomes)
