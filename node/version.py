"""The CLI version, read from package metadata so it lives in one place (pyproject.toml)."""
from importlib.metadata import PackageNotFoundError, version as _dist_version


def cli_version() -> str:
    try:
        return _dist_version("parallelix-node")
    except PackageNotFoundError:
        return "0+unknown"
