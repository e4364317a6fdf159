"""Where the node keeps its files (`~/.parallelix` or `$PARALLELIX_HOME`), and their folder rules."""
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from node.errors import ConfigError

# sockaddr_un.sun_path holds 108 bytes on Linux and 104 on macOS, NUL included.
_IPC_PATH_MAX = 103


@dataclass(frozen=True)
class Home:
    """The node's home folder and the paths of everything in it."""

    root: Path

    @property
    def key(self) -> Path:
        return self.root / "node.key"

    @property
    def config(self) -> Path:
        return self.root / "config.toml"

    @property
    def state(self) -> Path:
        return self.root / "state.json"

    @property
    def outbox(self) -> Path:
        return self.root / "outbox"

    @property
    def log(self) -> Path:
        return self.root / "node.log"

    @property
    def run(self) -> Path:
        return self.root / "run"

    @property
    def run_pointer(self) -> Path:
        """Records the short fallback run folder when the home path is too long for ipc://."""
        return self.root / "run.path"

    def ensure(self) -> None:
        """Create the home folder owner-only (0700), as ssh does for ~/.ssh, and any missing
        parent too: `mkdir -p` would make them 0777 under umask 000, and another user could
        then swap the home for one of their own."""
        try:
            for folder in [*reversed(self.root.parents), self.root]:
                if not folder.exists():
                    folder.mkdir(mode=0o700, exist_ok=True)
        except OSError as e:
            raise ConfigError(f"cannot create the home folder {self.root}: {e.strerror}; "
                              "choose another --home (or PARALLELIX_HOME)") from None

    @property
    def sockets_fit_in_run(self) -> bool:
        """Whether ipc:// paths under `run/` fit the OS limit (else a short fallback folder)."""
        return len(str(self.run / "control.sock").encode()) <= _IPC_PATH_MAX

    def socket_dir(self) -> Path:
        """The folder that holds the daemon's sockets: `run/`, or for a long home the short
        folder the running daemon made and named in `run.path` (see make_socket_dir)."""
        if self.sockets_fit_in_run:
            return self.run
        try:
            return Path(self.run_pointer.read_text().strip())
        except OSError:
            return self.run  # no daemon runs: nothing answers there either

    def make_socket_dir(self) -> Path:
        """Create the socket folder for a daemon about to bind. For a long home it is a fresh
        0700 folder with a random name under the temp folder (mkdtemp, O_EXCL): a predictable
        name could be created first by another user, and `start` would have to refuse it."""
        if self.sockets_fit_in_run:
            make_private_dir(self.run)
            return self.run
        import tempfile  # here, not at the top: `status` and `version` start faster without
        folder = Path(tempfile.mkdtemp(prefix=f"parallelix-{os.getuid()}-"))
        self.run_pointer.write_text(str(folder) + "\n")
        return folder

    def endpoint(self, name: str) -> str:
        """The ipc:// endpoint of socket `name`, as clients find it."""
        return f"ipc://{self.socket_dir() / name}"


def resolve_home(flag: str | None) -> Home:
    """--home beats $PARALLELIX_HOME beats ~/.parallelix."""
    if flag is not None and not flag.strip():
        raise ConfigError("--home is empty; give a folder, or leave --home out for ~/.parallelix")
    raw = flag or os.environ.get("PARALLELIX_HOME") or "~/.parallelix"
    return Home(Path(raw).expanduser().absolute())


def make_private_dir(path: Path) -> None:
    """Create `path` as 0700 and refuse one that others can enter or that someone else owns."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = path.lstat()
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
        raise ConfigError(f"{path} is not a folder owned by you; remove it and start again")
    if st.st_mode & 0o077:
        os.chmod(path, 0o700)
