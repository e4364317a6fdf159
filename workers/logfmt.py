"""Text that reaches a terminal or a log: one UTC time stamp for every process of the daemon
(`2026-11-25T15:07:45.428Z`), and outside text with its control characters escaped.

Children (workers, the heartbeat process) log to stderr, which the terminal or the service
manager's journal shows next to the supervisor's lines; the same stamp keeps them sortable.
Model names, error messages and request ids come from Ollama and the coordinator: an escape
sequence in them must never reach an operator's terminal raw, and a value that reads like more
`key=value` fields (a request id `req_9 event=stopped level=info`) is written quoted, so it
cannot forge fields in the log or in `start --json`."""
import json
import logging
import re
import sys
import time

from workers.escape import escape_controls

_FIELD_LIKE = re.compile(r'(?:^|\s)[^\W\d]\w*=|"')


def quote_value(text: str) -> str:
    """`text` as it may stand in a `key=value` line: as is, or as a JSON string when it could
    pass for fields of its own (or holds a quote). Free text without `word=` stays readable."""
    return json.dumps(text, ensure_ascii=False) if _FIELD_LIKE.search(text) else text


class _Quoted:
    """A log argument that formats quoted (ours or not, every %s/%r argument is treated as
    text from outside: which ones are is not the log call's to remember)."""

    __slots__ = ("value",)

    def __init__(self, value: object) -> None:
        self.value = value

    def __str__(self) -> str:
        return quote_value(str(self.value))

    def __repr__(self) -> str:
        return quote_value(repr(self.value))


_base_factory = logging.getLogRecordFactory()


def _quoting_factory(*args: object, **kwargs: object) -> logging.LogRecord:
    record = _base_factory(*args, **kwargs)
    if isinstance(record.args, tuple):
        record.args = tuple(a if isinstance(a, (int, float)) else _Quoted(a) for a in record.args)
    return record


def quote_log_arguments() -> None:
    """Make every log record of this process quote its string arguments (see quote_value)."""
    logging.setLogRecordFactory(_quoting_factory)


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
    quote_log_arguments()
