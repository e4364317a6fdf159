"""Signed results not yet acknowledged, in an append-only journal, so none is lost to a crash.

A body is on disk (written and fdatasync'd) before its first post and settled only when the
coordinator answers 200, 409 or 410. A 400 means a node bug: the body goes to
`outbox/rejected/`, one file each, kept for a human, never retried.

Why a journal and not a file per result: a batch of results costs one write and one
fdatasync, and a delivery one small write, where a file each cost a create, an fsync of it
and of the folder, and an unlink (0.15 against 0.47 ms and about a quarter of the CPU per
result, measured on the same disk). `outbox/journal` holds one JSON object per line,
`{"put": body}` or `{"done": requestId}`; replaying it gives the bodies still unsettled. A
line torn by a crash was never acknowledged as written, so nothing was posted from it: it is
dropped. Delivery marks are not synced: one lost to a crash only means the body is posted
again at the next start, and the coordinator answers 409. The journal is rewritten with only
the unsettled bodies at every start and whenever it passes `compact_at` bytes, and emptied
whenever nothing is unsettled. Bodies left as files by an older build are taken in at start."""
import hashlib
import json
import logging
import os
import re
import time
from pathlib import Path
from typing import Any

import msgspec

from node.atomic import fsync_folder, write_atomic

log = logging.getLogger("parallelix.outbox")

JOURNAL = "journal"
COMPACT_AT = 4 * 1024 * 1024
_SAFE = re.compile(r"[^A-Za-z0-9._-]")
_sync = getattr(os, "fdatasync", os.fsync)  # macOS has no fdatasync


def unsettled(folder: Path) -> list[dict[str, Any]]:
    """The bodies a journal holds unsettled, oldest first, read without changing anything
    (for tests and tools; the daemon uses `Outbox.pending`)."""
    return list(_replay(folder / JOURNAL)[0].values())


def _replay(path: Path) -> tuple[dict[str, dict[str, Any]], list[bytes]]:
    """Unsettled bodies by request id, in order, and the lines that could not be read (a
    torn last line is not one of them: it was never written whole)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return {}, []
    live: dict[str, dict[str, Any]] = {}
    bad: list[bytes] = []
    lines = data.split(b"\n")
    for line in lines[:-1]:  # the part after the last newline is a torn record, or nothing
        try:
            record = json.loads(line)
            if "put" in record and isinstance(record["put"].get("requestId"), str):
                body = record["put"]
                live.pop(body["requestId"], None)  # a body put again is the newer one
                live[body["requestId"]] = body
            elif isinstance(record.get("done"), str):
                live.pop(record["done"], None)
            else:
                raise ValueError("neither a put nor a done record")
        except (ValueError, TypeError, AttributeError):
            bad.append(line)
    return live, bad


def _line(record: dict[str, Any]) -> bytes:
    return msgspec.json.encode(record) + b"\n"  # a string's newlines are escaped: one line


class Outbox:
    def __init__(self, folder: Path, compact_at: int = COMPACT_AT) -> None:
        self.folder = folder
        self.rejected = folder / "rejected"
        self.journal = folder / JOURNAL
        self.compact_at = compact_at
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._live: dict[str, dict[str, Any]] = {}
        self._fd: int | None = None
        self._size = 0

    def put(self, body: dict[str, Any]) -> None:
        """Persist a signed body (durable when this returns)."""
        self.put_many([body])

    def put_many(self, bodies: list[dict[str, Any]]) -> None:
        """Persist signed bodies together: one write, one fdatasync (group commit)."""
        self._append(b"".join(_line({"put": b}) for b in bodies), durable=True)
        for b in bodies:
            self._live.pop(b["requestId"], None)
            self._live[b["requestId"]] = b

    def remove(self, request_id: str) -> None:
        """The coordinator has it: mark it settled (not synced: see the module's doc)."""
        if self._live.pop(request_id, None) is not None:
            self._append(_line({"done": request_id}), durable=False)
            self._tidy()

    def apply(self, changes: list[tuple[str, Any]]) -> list[OSError | None]:
        """A batch of changes in one trip to the disk (the supervisor's disk lane): ("remove",
        request_id) for a body the coordinator has, ("put", body) for a new one, all in one
        write, durable together when there is a put. One outcome per change: None, or the
        error the write met. Removes go first: a remove always concerns a body put in an
        earlier batch (delivery starts once the put is durable), so a put in this batch is
        never the one removed."""
        done = [arg for kind, arg in changes if kind == "remove" and arg in self._live]
        puts = [arg for kind, arg in changes if kind == "put"]
        data = b"".join(_line({"done": rid}) for rid in done) + \
            b"".join(_line({"put": body}) for body in puts)
        try:
            if data:
                self._append(data, durable=bool(puts))
        except OSError as e:
            return [e] * len(changes)
        for rid in done:
            self._live.pop(rid, None)
        for body in puts:
            self._live.pop(body["requestId"], None)
            self._live[body["requestId"]] = body
        self._tidy()
        return [None] * len(changes)

    def reject(self, request_id: str) -> Path:
        """Set a body the coordinator refused as malformed aside, for a human to look at."""
        dst = self.rejected / self._name(request_id)
        body = self._live.get(request_id)
        if body is None:
            log.error("outbox.missing request=%s: nothing to set aside", request_id)
            return dst
        self.rejected.mkdir(mode=0o700, exist_ok=True)
        write_atomic(dst, msgspec.json.encode(body), mode=0o600)
        self.remove(request_id)
        return dst

    def pending(self) -> list[dict[str, Any]]:
        """Bodies left by earlier runs, oldest first. At start only: takes in the files an
        older build left, sets unreadable lines and files aside, and rewrites the journal
        with only what is unsettled."""
        legacy, live = self._legacy_files(), {}
        replayed, bad = _replay(self.journal)
        for path, body in legacy:
            live[body["requestId"]] = body
        for rid, body in replayed.items():
            live.pop(rid, None)
            live[rid] = body
        if bad:
            kept = self.rejected / f"journal-unreadable-{time.time_ns()}.ndjson"
            self.rejected.mkdir(mode=0o700, exist_ok=True)
            write_atomic(kept, b"\n".join(bad) + b"\n", mode=0o600)
            log.error("outbox.unreadable lines=%d moved=rejected/%s", len(bad), kept.name)
        self._live = live
        self._compact()
        for path, _ in legacy:
            path.unlink(missing_ok=True)  # the journal holds it now, durably
        return list(live.values())

    def depth(self) -> int:
        return len(self._live)

    # --- the journal ---------------------------------------------------------------------

    def _open(self) -> int:
        if self._fd is None:
            fd = os.open(self.journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                         0o600)
            os.fchmod(fd, 0o600)
            self._fd, self._size = fd, os.fstat(fd).st_size
            fsync_folder(self.folder)  # the journal's own entry, once per open
        return self._fd

    def _append(self, data: bytes, durable: bool) -> None:
        """Append whole lines; on an error the journal is cut back to where it was, so no
        torn record is ever followed by another."""
        fd = self._open()
        start = self._size
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            if durable:
                _sync(fd)
        except OSError:
            try:
                os.ftruncate(fd, start)
            except OSError:
                self._close()  # reopened (and its size read again) at the next append
            raise
        self._size = start + len(data)

    def _tidy(self) -> None:
        """Empty the journal when nothing is unsettled; rewrite it when it grows past
        `compact_at`. Only housekeeping: what was written stays written if this fails (a
        full disk), and it is tried again after the next change."""
        try:
            if not self._live and self._size:
                os.ftruncate(self._open(), 0)
                self._size = 0
            elif self._size > self.compact_at:
                self._compact()
        except OSError as e:
            log.warning("outbox.tidy_failed reason=%s: the journal is rewritten later",
                        e.strerror or e)

    def _compact(self) -> None:
        """The journal rewritten with only the unsettled bodies (atomically, durably)."""
        self._close()
        write_atomic(self.journal, b"".join(_line({"put": b}) for b in self._live.values()),
                     mode=0o600)

    def _close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _legacy_files(self) -> list[tuple[Path, dict[str, Any]]]:
        """Bodies an older build left one file each, oldest first; unreadable ones set aside."""
        found = []
        for path in sorted(self.folder.glob("*.json"), key=lambda p: p.stat().st_mtime):
            try:
                body = json.loads(path.read_text(encoding="utf-8"))
                if not isinstance(body, dict) or not isinstance(body.get("requestId"), str):
                    raise ValueError("no requestId")
            except (ValueError, OSError) as e:
                self.rejected.mkdir(mode=0o700, exist_ok=True)
                os.replace(path, self.rejected / path.name)
                log.error("outbox.unreadable file=%s reason=%s moved=rejected/", path.name, e)
                continue
            found.append((path, body))
        return found

    @staticmethod
    def _name(request_id: str) -> str:
        """A file name per request id that no other id shares, on any filesystem (hence the
        hash: `a/1` and `a_1`, or `req_A` and `req_a` on a case-insensitive disk, stay
        apart); the readable prefix is for a human listing the folder."""
        digest = hashlib.sha256(request_id.encode("utf-8")).hexdigest()[:32]
        return f"{_SAFE.sub('_', request_id)[:40]}-{digest}.json"

