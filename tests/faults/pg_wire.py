"""Just enough of the PostgreSQL frontend/backend protocol (v3) to find message boundaries.

The fault proxy reads the bytes going each way through :class:`MessageSplitter` so it can act
on one message (a ``COMMIT``, the ``CopyDone`` of a COPY) while forwarding every byte as it
came. Only framing is decoded; the one exception is the statement text of ``Query`` and
``Parse`` messages, which says what the client is doing.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

# Codes of the untyped messages a client may send before its StartupMessage.
SSL_REQUEST = 80877103
GSSENC_REQUEST = 80877104
CANCEL_REQUEST = 80877102

QUERY = b"Q"
PARSE = b"P"
SYNC = b"S"
COPY_DONE = b"c"
READY_FOR_QUERY = b"Z"

TRANSACTION_END_WORDS = ("COMMIT", "END", "ROLLBACK", "ABORT")


@dataclass(frozen=True)
class Message:
    """One protocol message: ``kind`` is its type byte (``b""`` for the untyped startup-phase
    messages and for the one-byte answer to an SSL or GSS request); ``raw`` is every byte of it."""

    kind: bytes
    raw: bytes

    @property
    def statement(self) -> str | None:
        """The SQL text of a ``Query`` or ``Parse`` message, else None."""
        body = self.raw[5:]
        if self.kind == QUERY:
            return body.split(b"\0", 1)[0].decode(errors="replace")
        if self.kind == PARSE:
            parts = body.split(b"\0", 2)  # statement name, query text, parameter types
            return parts[1].decode(errors="replace") if len(parts) > 1 else None
        return None


def is_encryption_request(message: Message) -> bool:
    """An SSLRequest or GSSENCRequest: the server answers it with one untyped byte."""
    if message.kind or len(message.raw) != 8:
        return False
    return struct.unpack_from("!i", message.raw, 4)[0] in (SSL_REQUEST, GSSENC_REQUEST)


def first_word(statement: str) -> str:
    """The statement's first keyword, upper-cased (``"commit;"`` → ``"COMMIT"``)."""
    words = statement.strip().split(None, 1)
    return words[0].rstrip(";").upper() if words else ""


class MessageSplitter:
    """Splits one direction of a connection into messages as bytes arrive.

    A client stream starts untyped (SSLRequest, GSSENCRequest, CancelRequest, StartupMessage:
    int32 length, int32 code) and is typed after the StartupMessage. A server stream is typed
    except for the single byte that answers an SSL or GSS request; the client side announces
    it with :meth:`expect_single_byte`. After an accepted SSL or GSS request the stream is
    encrypted and :attr:`opaque` is set: callers then just forward bytes.
    """

    def __init__(self, *, client: bool) -> None:
        self._buffer = bytearray()
        self._untyped = client
        self._single_bytes = 0
        self.opaque = False

    def expect_single_byte(self) -> None:
        """The next byte is the server's one-byte answer to an SSL or GSS request."""
        self._single_bytes += 1

    def feed(self, data: bytes) -> list[Message]:
        """The complete messages ``data`` finishes; an incomplete tail waits for more bytes."""
        if self.opaque:
            return [Message(b"", bytes(data))]
        self._buffer += data
        messages: list[Message] = []
        while True:
            message = self._next()
            if message is None:
                return messages
            messages.append(message)
            if self.opaque:
                rest = bytes(self._buffer)
                self._buffer.clear()
                if rest:
                    messages.append(Message(b"", rest))
                return messages

    def _next(self) -> Message | None:
        buffer = self._buffer
        if self._single_bytes:
            if not buffer:
                return None
            self._single_bytes -= 1
            answer = bytes(buffer[:1])
            del buffer[:1]
            if answer in (b"S", b"G"):
                self.opaque = True  # TLS or GSS encryption follows
            return Message(b"", answer)
        if self._untyped:
            if len(buffer) < 8:
                return None
            length, code = struct.unpack_from("!ii", buffer)
            if len(buffer) < length:
                return None
            raw = bytes(buffer[:length])
            del buffer[:length]
            if code not in (SSL_REQUEST, GSSENC_REQUEST, CANCEL_REQUEST):
                self._untyped = False  # the StartupMessage: typed messages follow
            return Message(b"", raw)
        if len(buffer) < 5:
            return None
        (length,) = struct.unpack_from("!i", buffer, 1)
        if len(buffer) < 1 + length:
            return None
        raw = bytes(buffer[: 1 + length])
        del buffer[: 1 + length]
        return Message(raw[:1], raw)
