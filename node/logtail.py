"""Read the end of a log without reading all of it, and follow it across size rotation
(RotatingFileHandler renames node.log -> node.log.1 and creates a new node.log) and truncation."""
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

BLOCK = 64 * 1024
MARK = 64  # bytes before the read offset that must still be there: else the file was rewritten


def _decode(raw: bytes) -> str:
    return raw.rstrip(b"\r").decode("utf-8", errors="replace")


def _tail(f: BinaryIO, n: int) -> tuple[list[bytes], bytes, int]:
    """The last `n` complete lines of an open file (read backwards in blocks), the partial last
    line (no newline yet) and the offset of the end that was read."""
    end = f.seek(0, os.SEEK_END)
    pos, data = end, b""
    while pos > 0 and data.count(b"\n") <= n:
        step = min(BLOCK, pos)
        pos -= step
        f.seek(pos)
        data = f.read(step) + data
    f.seek(end)
    parts = data.split(b"\n")
    partial = parts.pop()  # after the last newline: b"" when the file ends with one
    if pos > 0 and parts:
        parts = parts[1:]  # the first piece may start mid-line
    return (parts[-n:] if n > 0 else []), partial, end


def _rewritten(f: BinaryIO, mark: bytes) -> bool:
    """Whether the bytes just before our offset are no longer the ones we read there: the file
    was truncated and written again, maybe past our offset, between two polls."""
    if not mark:
        return False
    return os.pread(f.fileno(), len(mark), f.tell() - len(mark)) != mark


def tail_lines(path: Path, n: int) -> list[str]:
    """The last `n` lines of `path` (a last line without its newline counts). Raises OSError."""
    with open(path, "rb") as f:
        lines, partial, _ = _tail(f, n + (0 if not n else 1))
    if partial:
        lines.append(partial)
    return [_decode(l) for l in lines[-n:]] if n > 0 else []


def follow(path: Path, n: int, poll: float = 0.25,
           sleep: Callable[[float], None] = time.sleep) -> Iterator[str]:
    """Yield the last `n` lines of `path`, then every line appended, forever.

    Follows by name: when `path` is renamed away (rotation) the rest of the old file is read,
    then the new file from its start; when it is truncated it is read from the start, also
    when it grew past the old end again within one poll (the bytes before the read offset
    changed).
    Waits for `path` to appear when it does not exist yet. Polls every `poll` seconds."""
    f: BinaryIO | None = None
    buf = b""
    mark = b""  # the last bytes read from the open file
    first = os.path.exists(path)  # a log that appears later is new: read all of it
    try:
        while True:
            if f is None:
                try:
                    f = open(path, "rb")
                except FileNotFoundError:
                    sleep(poll)
                    continue
                mark = b""
                if first:
                    lines, buf, end = _tail(f, n)
                    mark = os.pread(f.fileno(), min(MARK, end), end - min(MARK, end))
                    yield from (_decode(l) for l in lines)
                first = False
            if _rewritten(f, mark):
                f.seek(0)
                buf, mark = b"", b""
                continue
            chunk = f.read()
            if chunk:
                mark = (mark + chunk)[-MARK:]
                buf += chunk
                *complete, buf = buf.split(b"\n")
                yield from (_decode(l) for l in complete)
                continue
            # At the end of the open file: has it been rotated or truncated?
            try:
                st = os.stat(path)
            except FileNotFoundError:
                st = None
            mine = os.fstat(f.fileno())
            if st is None or (st.st_ino, st.st_dev) != (mine.st_ino, mine.st_dev):
                rest = f.read()  # written between our last read and the rename
                f.close()
                f = None
                buf += rest
                *complete, buf = buf.split(b"\n")
                yield from (_decode(l) for l in complete)
                if buf:  # the old file's last line never got its newline
                    yield _decode(buf)
                    buf = b""
                continue  # open the new file (from its start) at once, or wait for it
            if mine.st_size < f.tell():
                f.seek(0)  # truncated in place
                buf, mark = b"", b""
                continue
            sleep(poll)
    finally:
        if f is not None:
            f.close()
