"""The daemon's log: one writer (the supervisor), `node.log` rotated by size, plus the console.

Lines read `<UTC time> <LEVEL> <event> key=value …`, e.g. `served req_a3f1 model=llama3.2
ms=47 poe=0x…`; with `--json` every event is also one JSON object per line on stdout."""
import json
import logging
import logging.handlers
import math
import os
import re
import sys
from pathlib import Path

from workers.logfmt import UtcFormatter, quote_log_arguments

LOG_BYTES = 10 * 1024 * 1024
LOG_BACKUPS = 5


_TOKEN = re.compile(r'(?:"(?:[^"\\]|\\.)*"|[^\s"]+|")+')


def event_fields(message: str) -> dict[str, str]:
    """Split `event word key=value …` into {"event": "event word", key: value, …}. A quoted
    value (workers/logfmt.py quote_value) is one token and is unquoted; it never adds fields."""
    words, fields = [], {}
    for token in _TOKEN.findall(message):
        key, sep, value = token.partition("=")
        if sep and key.isidentifier():
            fields[key] = _unquote(value)
        elif fields:
            last = next(reversed(fields))
            fields[last] += " " + token
        else:
            words.append(token)
    return {"event": " ".join(words), **fields}


_PLACEHOLDER = re.compile(r"%(?:%|[-#0 +]*\d*(?:\.\d+)?[sdifrx])")


def numeric_args(record: logging.LogRecord) -> dict[str, int | float]:
    """The `key=%d`-style fields whose argument is a number, so JSON shows `"pid": 1735`, not
    `"pid": "1735"`."""
    if not isinstance(record.args, tuple) or not isinstance(record.msg, str):
        return {}
    found, index = {}, 0
    for match in _PLACEHOLDER.finditer(record.msg):
        if match.group() == "%%":
            continue
        if index >= len(record.args):
            break
        arg, index = record.args[index], index + 1
        key = re.search(r"(\w+)=$", record.msg[:match.start()])
        end = record.msg[match.end():match.end() + 1]
        if key and end in ("", " ") and isinstance(arg, (int, float)) \
                and not isinstance(arg, bool) and match.group()[-1] in "sdi" \
                and math.isfinite(arg):
            found[key.group(1)] = arg
    return found


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        try:
            return json.loads(value)
        except ValueError:
            pass
    return value


class JsonLineFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc = {"ts": int(record.created * 1000), "level": record.levelname.lower()}
        for key, value in event_fields(record.getMessage()).items():
            doc.setdefault(key, value)  # a message cannot replace the time or the level
        doc.update((k, v) for k, v in numeric_args(record).items() if k in doc)
        return json.dumps(doc, ensure_ascii=False)


class LastError(logging.Handler):
    """Remembers the last ERROR logged, for the one line `start` ends with when it fails."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.message: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        self.message = record.getMessage()

    @classmethod
    def install(cls) -> "LastError":
        handler = cls()
        logging.getLogger().addHandler(handler)
        return handler


class SizeRotatingHandler(logging.handlers.RotatingFileHandler):
    """RotatingFileHandler at a fraction of its per-line cost (one `served` line per request):
    the stdlib formats every record twice, to measure it first, and stats the file twice per
    record. Here the size written so far decides, so a file may end one line past maxBytes;
    a log that is not a regular file (/dev/null) is never rotated, as in the stdlib."""

    def shouldRollover(self, record: logging.LogRecord) -> bool:
        if self.stream is None or self.maxBytes <= 0:
            return False
        if not hasattr(self, "_regular"):
            self._regular = os.path.isfile(self.baseFilename)
        return self._regular and self.stream.tell() >= self.maxBytes


def setup_logging(log_path: Path, as_json: bool, debug: bool = False) -> None:
    """Log to node.log (rotated) and to the console: stderr text, or JSON lines on stdout."""
    root = logging.getLogger()
    root.handlers.clear()
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    file_handler = SizeRotatingHandler(log_path, maxBytes=LOG_BYTES, backupCount=LOG_BACKUPS,
                                       encoding="utf-8")
    file_handler.setFormatter(UtcFormatter("%(asctime)s %(levelname)s %(message)s"))
    root.addHandler(file_handler)
    if as_json:
        console = logging.StreamHandler(sys.stdout)
        console.setFormatter(JsonLineFormatter())
    else:
        console = logging.StreamHandler(sys.stderr)
        console.setFormatter(UtcFormatter("%(asctime)s %(message)s"))
    root.addHandler(console)
    quote_log_arguments()
    for noisy in ("urllib3", "requests"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
