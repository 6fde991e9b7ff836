"""Server-sent events from a byte stream: only the `data` of each event, as bytes.

The `openai` client builds a typed object for every streamed chunk, which costs more CPU than
everything else an answer does; reading the events here and parsing each one with a single
`json.loads` keeps a streamed token near the cost of the network read that brought it.
Framing follows the HTML standard's event-stream rules: lines end in LF, CRLF or CR (also when
the two bytes of a CRLF arrive in different reads), an event ends at a blank line, its `data`
lines are joined with LF, lines starting with ":" are comments, other fields are ignored, and
an event with no data is not dispatched, nor one the stream ends before its blank line.
"""

from __future__ import annotations

from collections.abc import Iterator

BLANK_LINE = b"\n\n"


class EventDecoder:
    """Feeds on the bytes of a response as they arrive; yields each complete event's data."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._scanned = 0  # the buffer holds no event end before this offset
        self._held_cr = False  # the last byte read was a CR, whose LF may come next

    def feed(self, chunk: bytes) -> Iterator[bytes]:
        if self._held_cr or b"\r" in chunk:
            chunk = self._lf_only(chunk)
        buffer = self._buffer
        buffer += chunk
        start = 0
        end = buffer.find(BLANK_LINE, self._scanned)
        while end != -1:
            data = event_data(bytes(buffer[start:end]))
            if data is not None:
                yield data
            start = end + 2
            end = buffer.find(BLANK_LINE, start)
        del buffer[:start]
        self._scanned = max(0, len(buffer) - 1)

    def _lf_only(self, chunk: bytes) -> bytes:
        if self._held_cr:
            chunk = b"\r" + chunk
        self._held_cr = chunk.endswith(b"\r")
        if self._held_cr:
            chunk = chunk[:-1]
        return chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")


def event_data(event: bytes) -> bytes | None:
    """The data of one event (its lines without the blank line), or None when it has none."""
    if event.startswith(b"data: ") and b"\n" not in event:
        return event[6:]  # the usual event: a single data line
    lines: list[bytes] = []
    for line in event.split(b"\n"):
        name, _, value = line.partition(b":")
        if name == b"data":
            lines.append(value[1:] if value.startswith(b" ") else value)
    return b"\n".join(lines) if lines else None
