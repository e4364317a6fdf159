"""The CLI version, read from package metadata so it lives in one place (pyproject.toml)."""
import functools


@functools.cache
def cli_version() -> str:
    """Read once per process: package metadata is slow to search (~1 ms) and importlib.metadata
    costs ~2 MB, so processes that do not need it (the heartbeat) are told the version."""
    from importlib.metadata import PackageNotFoundError, version as _dist_version
    try:
        return _dist_version("parallelix-node")
    except PackageNotFoundError:
        return "0+unknown"
