"""Noticing that the supervisor died, so an orphaned worker never keeps a GPU busy."""
import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def term_on_parent_death() -> None:
    """On Linux, have the kernel send SIGTERM when the parent dies, so the loop wakes at once.

    Elsewhere this does nothing and the 1 s `parent_gone` poll is the only check. Callers must
    check `parent_gone` right after: the parent may have died before the request took effect.
    """
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def parent_gone(parent_pid: int) -> bool:
    """An orphan is re-parented (to init or a subreaper), so its parent pid changes."""
    return os.getppid() != parent_pid
