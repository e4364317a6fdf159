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
    _fsync_folder(files[0][0].parent)


def create_durable_many(files: list[tuple[Path, bytes]], mode: int = 0o600) -> None:
    """Create files of one folder, durable when this returns, with one journal commit for all
    (the outbox's group commit).

    A file that does not exist yet is written under its own name (O_EXCL) rather than a temp
    name renamed: the first fsync then commits every file's data and folder entry together, and
    the folder's fsync finds nothing left; a temp file and a rename cost a second commit. The
    price is that a crash before this returns can leave a torn file, which a reader must treat
    as never written (nothing was sent from it yet). A name that exists already is replaced as
    write_atomic_many does. On an error every file this call created is removed."""
    made: list[tuple[Path, int]] = []
    existing: list[tuple[Path, bytes]] = []
    try:
        for path, data in files:
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
            except FileExistsError:
                existing.append((path, data))
                continue
            made.append((path, fd))
            os.fchmod(fd, mode)  # whatever the umask
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        for _, fd in made:
            os.fsync(fd)
        if made:
            _fsync_folder(made[0][0].parent)
    except BaseException:
        for path, _ in made:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        raise
    finally:
        for _, fd in made:
            os.close(fd)
    write_atomic_many(existing, mode)


def _fsync_folder(folder: Path) -> None:
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
