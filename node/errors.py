"""Errors that end a command with one clear line and a meaningful exit status."""


class NodeError(Exception):
    """An error the user can act on; `str()` is the one line shown to them."""

    exit_code = 1


class ConfigError(NodeError):
    """Usage or configuration error (bad flag, unreadable key, key too open): exit 2."""

    exit_code = 2


class IdentityRejected(NodeError):
    """The coordinator does not know this key or node (key_mismatch, unknown_node): exit 3."""

    exit_code = 3
