"""The CLI version, read from package metadata so it lives in one place (pyproject.toml)."""
import functools
from importlib.metadata import PackageNotFoundError, version as _dist_version


@functools.cache
def cli_version() -> str:
    """Read once per process: package metadata is slow to search (~1 ms)."""
    try:
        return _dist_version("parallelix-node")
    except PackageNotFoundError:
        return "0+unknown"
