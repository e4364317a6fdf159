"""Text that reaches a terminal or a log: one UTC time stamp for every process of the daemon
(`2026-11-25T15:07:45.428Z`), and outside text with its control characters escaped.

Children (workers, the heartbeat process) log to stderr, which the terminal or the service
manager's journal shows next to the supervisor's lines; the same stamp keeps them sortable.
Model names, error messages and request ids come from Ollama and the coordinator: an escape
sequence in them must never reach an operator's terminal raw."""
import logging
import sys
import time

from workers.escape import escape_controls


class UtcFormatter(logging.Formatter):
    def formatMessage(self, record: logging.LogRecord) -> str:
        return escape_controls(super().formatMessage(record)).replace("\n", "\\n")

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
