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
        """Create the home folder owner-only (0700), as ssh does for ~/.ssh."""
        try:
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as e:
            raise ConfigError(f"cannot create the home folder {self.root}: {e.strerror}; "
                              "choose another --home (or PARALLELIX_HOME)") from None

    def socket_dir(self) -> Path:
        """The folder that holds the daemon's sockets: `run/`, or a short fallback for long homes."""
        if len(str(self.run / "control.sock").encode()) <= _IPC_PATH_MAX:
            return self.run
        import hashlib  # here, not at the top: `status` and `version` start faster without
        import tempfile
        digest = hashlib.sha256(str(self.root.resolve()).encode()).hexdigest()[:12]
        return Path(tempfile.gettempdir()) / f"parallelix-{os.getuid()}-{digest}"

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
