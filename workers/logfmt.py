"""One time format for every process of the daemon: `2026-11-25T15:07:45.428Z`, UTC.

Children (workers, the heartbeat process) log to stderr, which the terminal or the service
manager's journal shows next to the supervisor's lines; the same stamp keeps them sortable."""
import logging
import sys
import time


class UtcFormatter(logging.Formatter):
    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + \
            f".{int(record.msecs):03d}Z"


def log_to_stderr(role: str) -> None:
    """Child-process logging: `<UTC time> <role> <LEVEL> <message>` on stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(UtcFormatter(f"%(asctime)s {role} %(levelname)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
