"""Signed results not yet acknowledged, one file per request, so none is lost to a crash.

A body is written atomically before its first post and removed only when the coordinator
answers 200, 409 or 410. A 400 means a node bug: the file moves to `outbox/rejected/`,
kept for a human, never retried."""
import hashlib
import json
import logging
import os
import re
from pathlib import Path
from typing import Any

import msgspec

from node.atomic import create_durable_many

log = logging.getLogger("parallelix.outbox")

_SAFE = re.compile(r"[^A-Za-z0-9._-]")


class Outbox:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.rejected = folder / "rejected"
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)

    def _path(self, request_id: str) -> Path:
        """A name per request id that no other id shares, on any filesystem (hence the hash:
        `a/1` and `a_1`, or `req_A` and `req_a` on a case-insensitive disk, stay apart); the
        readable prefix is for a human listing the folder."""
        digest = hashlib.sha256(request_id.encode("utf-8")).hexdigest()[:32]
        return self.folder / f"{_SAFE.sub('_', request_id)[:40]}-{digest}.json"

    def put(self, body: dict[str, Any]) -> Path:
        """Persist a signed body (durable when this returns)."""
        return self.put_many([body])[0]

    def put_many(self, bodies: list[dict[str, Any]]) -> list[Path]:
        """Persist signed bodies together, one file each, sharing one journal commit (group
        commit); all are durable when this returns. A file torn by a crash before then is set
        aside by `pending` like any unreadable one: it was never posted."""
        files = [(self._path(b["requestId"]), msgspec.json.encode(b)) for b in bodies]
        create_durable_many(files, mode=0o600)
        return [path for path, _ in files]

    def remove(self, request_id: str) -> None:
        try:
            os.unlink(self._path(request_id))
        except FileNotFoundError:
            pass

    def apply(self, changes: list[tuple[str, Any]]) -> list[OSError | None]:
        """A batch of changes in one trip to the disk (the supervisor's disk lane): ("remove",
        request_id) for a body the coordinator has, ("put", body) for a new one, all the puts
        durable together (group commit). One outcome per change: None, or the error it met.
        Removes go first: a remove always concerns a body put in an earlier batch (delivery
        starts once the put is durable), so a put in this batch is never the one removed."""
        outcomes: list[OSError | None] = [None] * len(changes)
        puts = []
        for i, (kind, arg) in enumerate(changes):
            if kind == "put":
                puts.append(i)
                continue
            try:
                self.remove(arg)
            except OSError as e:
                outcomes[i] = e
        if puts:
            try:
                self.put_many([changes[i][1] for i in puts])
            except OSError as e:
                for i in puts:
                    outcomes[i] = e
        return outcomes

    def reject(self, request_id: str) -> Path:
        """Move a body the coordinator refused as malformed aside, for a human to look at."""
        self.rejected.mkdir(mode=0o700, exist_ok=True)
        src = self._path(request_id)
        dst = self.rejected / src.name
        try:
            os.replace(src, dst)
        except FileNotFoundError:
            log.error("outbox.missing request=%s: nothing to set aside", request_id)
        return dst

    def pending(self) -> list[dict[str, Any]]:
        """Bodies left from earlier runs, oldest first; unreadable files are set aside."""
        bodies = []
        paths = sorted(self.folder.glob("*.json"), key=lambda p: p.stat().st_mtime)
        for path in paths:
            try:
                body = json.loads(path.read_text(encoding="utf-8"))
                if not isinstance(body, dict) or not isinstance(body.get("requestId"), str):
                    raise ValueError("no requestId")
            except (ValueError, OSError) as e:
                self.rejected.mkdir(mode=0o700, exist_ok=True)
                os.replace(path, self.rejected / path.name)
                log.error("outbox.unreadable file=%s reason=%s moved=rejected/", path.name, e)
                continue
            if path != self._path(body["requestId"]):  # named by an older build: rename
                os.replace(path, self._path(body["requestId"]))
            bodies.append(body)
        return bodies

    def depth(self) -> int:
        return sum(1 for _ in self.folder.glob("*.json"))
