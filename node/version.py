"""The CLI version: node.__version__, which pyproject.toml also reads, so it lives in one place.
A constant rather than importlib.metadata, whose lookup scans every installed distribution
(slow, and ~2 MB in every process that reads it)."""
from node import __version__


def cli_version() -> str:
    return __version__
