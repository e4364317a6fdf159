"""Outside text on its way to a terminal: control characters escaped. Apart from workers.logfmt
so that the CLI's fast commands (`status`, `version`) escape their output without importing
logging."""
import re

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def escape_controls(text: str) -> str:
    """Show control characters (ESC, CR, BEL, C1 …) as \\xNN; tabs and newlines stay."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
