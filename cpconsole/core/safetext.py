"""Text from nodes (logs, command output, error messages) made safe to put on a terminal: no
escape sequence can move the cursor, retitle the pane, clear the screen or talk to the terminal,
and no control character acts. Colour codes go silently; other sequences and controls become
visible (␛, ␇, …) so that nothing hides in a line."""

from __future__ import annotations

import re
from typing import Any, TextIO

# ESC-introduced sequences (ECMA-48): CSI, OSC/DCS/SOS/PM/APC strings up to their terminator (or
# the end of the text), and two-character escapes; the same introduced by 8-bit C1 codes.
_SGR = re.compile(r"\x1b\[[0-9;:]*m")
_SEQUENCE = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]?"  # CSI
    r"|(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f]).*?(?:\x07|\x1b\\|\x9c|$)"  # OSC, DCS, SOS, PM, APC
    r"|\x1b[ -/]*[0-~]?",  # two-character escapes (with intermediates), or a lone ESC
    re.DOTALL,
)
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")


def _picture(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code < 0x20:
        return chr(0x2400 + code)  # the Unicode control pictures: ␀ … ␟
    return "␡" if code == 0x7F else "\ufffd"


def terminal_safe(text: str) -> str:
    """`text` with colour codes removed, other escape sequences shown as ␛ and every control
    character but tab shown as its picture."""
    text = _SGR.sub("", text)
    text = _SEQUENCE.sub("␛", text)
    return _CONTROL.sub(_picture, text)


def terminal_safe_lines(text: str) -> str:
    """terminal_safe for each line, the line breaks kept."""
    return "\n".join(terminal_safe(line) for line in text.split("\n"))


class SafeStream:
    """A text stream (stdout, stderr) that passes everything written through terminal_safe_lines:
    the one sanitiser on the way from the headless verbs to a terminal, whatever a renderer forgot.
    `.buffer` stays raw, for the bytes a verb gives on purpose (`logs --since-offset`)."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(terminal_safe_lines(text))
        return len(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)
