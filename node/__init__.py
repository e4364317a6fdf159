"""parallelix-node: the operator-side daemon and CLI of a ParalleliX inference node."""

# The one place the version lives: pyproject.toml reads it from here (setuptools dynamic
# version), and `version`, the manifest and /metrics report it without a package-metadata scan.
__version__ = "0.1.0"
