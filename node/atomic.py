"""Crash-safe file writes: a reader sees the old file or the new one, never half of either."""
import os
from pathlib import Path


def write_atomic(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write `data` to `path` via temp file, fsync and rename, then fsync the folder."""
    write_atomic_many([(Path(path), data)], mode)


def write_atomic_many(files: list[tuple[Path, bytes]], mode: int = 0o600) -> None:
    """Write several files of one folder atomically, durable when this returns (group commit).

    Every temp file is written before any is fsynced: the first fsync commits the filesystem
    journal with the others' data in it (ext4, xfs), so the later ones find little left to do;
    then each is renamed, and the folder is fsynced once for all of them."""
    if not files:
        return
    import tempfile  # here: the read-only commands (`status`, `version`) never pay for it

    temps: list[tuple[str, Path]] = []
    fds: list[int] = []
    try:
        for path, data in files:
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            fds.append(fd)
            temps.append((tmp, path))
            os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        for fd in fds:
            os.fsync(fd)
        while fds:
            os.close(fds.pop())
        while temps:
            tmp, path = temps[0]
            os.replace(tmp, path)
            temps.pop(0)
    except BaseException:
        for fd in fds:
            os.close(fd)
        for tmp, _ in temps:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
        raise
    fsync_folder(files[0][0].parent)


def fsync_folder(folder: Path) -> None:
    """Make a folder's entries (a file created, renamed or removed in it) durable."""
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
