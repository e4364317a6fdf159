"""One daemon per home: an flock'ed pid file under <home>/run/.

A lock (not just a pid) is what makes this safe: the kernel drops it when the holder dies,
so a pid file or socket left by a crash is stale by construction and simply replaced."""
import fcntl
import os
from pathlib import Path

from node.errors import ConfigError
from node.home import Home, make_private_dir


class RunLock:
    def __init__(self, home: Home) -> None:
        self.home = home
        self.path = home.run / "node.pid"
        self._fd: int | None = None

    def acquire(self) -> None:
        make_private_dir(self.home.run)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise ConfigError(f"a parallelix-node daemon (pid {other}) already runs for "
                              f"{self.home.root}; see `parallelix-node status`, or stop it first")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        """Unlock and remove the pid file, and `run/` itself when nothing else is left in it."""
        if self._fd is not None:
            self.path.unlink(missing_ok=True)
            os.close(self._fd)
            self._fd = None
            remove_empty_dir(self.home.run)


def running_pid(home: Home) -> int | None:
    """The pid of the live daemon for `home`, or None (a stale pid file is not a daemon)."""
    path = home.run / "node.pid"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.pread(fd, 32, 0).decode(errors="replace").strip()
            return int(text) if text.isdigit() else None
        return None
    finally:
        os.close(fd)


def clear_stale_sockets(folder: Path) -> None:
    """Remove sockets a crashed daemon left behind (only ever called while holding the lock)."""
    for name in ("work.sock", "heartbeat.sock", "control.sock", "events.sock"):
        try:
            os.unlink(folder / name)
        except FileNotFoundError:
            pass


def remove_empty_dir(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass  # not empty (another file appeared) or already gone: leave it


def remove_stale_socket_dir(home: Home) -> None:
    """Remove the short socket folder a crashed daemon named in `run.path` (only while holding
    the lock), when it is still ours: a folder someone else owns is left alone."""
    if home.sockets_fit_in_run or not home.run_pointer.exists():
        return
    folder = home.socket_dir()
    try:
        mine = folder.lstat().st_uid == os.getuid() and folder.is_dir() and not folder.is_symlink()
    except OSError:
        mine = False
    if mine:
        clear_stale_sockets(folder)
        remove_empty_dir(folder)
    home.run_pointer.unlink(missing_ok=True)
