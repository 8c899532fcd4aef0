"""JT/T 808 framing (JT/T 808-2013 / -2019 section 4.4): flags, escaping, check code, and a stream splitter.

A frame on the wire is ``0x7e`` + escaped(header + body + check code) + ``0x7e``. Inside a frame ``0x7e`` is
sent as ``0x7d 0x02`` and ``0x7d`` as ``0x7d 0x01``; the check code is the XOR of every byte of header and
body, computed before escaping.
"""

from __future__ import annotations

from ingest.rejection import Reason, Refusal

FLAG = 0x7E
"""Frame delimiter (标识位)."""
ESC = 0x7D
"""Escape byte."""
MAX_HEADER = 21
"""Longest header: 2019 with sub-package fields [byte]."""
MAX_BODY = 1023
"""Longest body the 10-bit length of the message attributes can tell [byte]."""
MAX_FRAME = 2 * (MAX_HEADER + MAX_BODY + 1)
"""Longest escaped frame between the flags: every byte of the longest frame escaped [byte]."""

_FLAG_B = b"\x7e"
_ESC_B = b"\x7d"


def escape(data: bytes) -> bytes:
    """``data`` escaped for the wire: ``0x7d`` → ``0x7d 0x01``, then ``0x7e`` → ``0x7d 0x02`` (section 4.4)."""
    return data.replace(b"\x7d", b"\x7d\x01").replace(b"\x7e", b"\x7d\x02")


def unescape(data: bytes) -> bytes:
    """The bytes ``escape`` made ``data`` from; raises ``Refusal(bad_syntax)`` on ``0x7d`` followed by anything
    but ``0x01``/``0x02`` (a trailing ``0x7d`` included) and on a ``0x7e`` inside the frame.

    Every ``0x7d`` of a well-escaped frame starts a pair, and the second byte of a pair is never ``0x7d``: the
    frame is well escaped exactly when the ``0x7d`` count equals the count of the two pairs (all counted in C).
    """
    if _FLAG_B in data:
        raise Refusal(Reason.BAD_SYNTAX, f"flag 0x7e inside a frame at byte {data.index(_FLAG_B)}", "frame")
    escapes = data.count(_ESC_B)
    if not escapes:
        return bytes(data)
    if escapes != data.count(b"\x7d\x01") + data.count(b"\x7d\x02"):
        at = _bad_escape(data)
        raise Refusal(Reason.BAD_SYNTAX, f"bad escape 0x7d {data[at + 1 : at + 2].hex() or 'at end'} at {at}", "frame")
    return data.replace(b"\x7d\x02", b"\x7e").replace(b"\x7d\x01", b"\x7d")


def _bad_escape(data: bytes) -> int:
    """Offset of the first ``0x7d`` not followed by ``0x01``/``0x02``."""
    at = data.find(_ESC_B)
    while data[at + 1 : at + 2] in (b"\x01", b"\x02"):
        at = data.find(_ESC_B, at + 2)
    return at


def check_code(data: bytes) -> int:
    """XOR of all bytes of ``data`` (0 for no bytes): the JT/T 808 check code (校验码).

    Folds the bytes as one integer, halving its width each step (a few big-integer operations in C instead of
    one Python step per byte).
    """
    n = len(data)
    x = int.from_bytes(data, "big")
    while n > 1:
        low = (n + 1) // 2  # bytes kept in the low half
        bits = 8 * low
        x = (x >> bits) ^ (x & ((1 << bits) - 1))
        n = low
    return x


class FrameSplitter:
    """Cuts a TCP byte stream into frames: ``feed`` returns the escaped bytes between two flags, without them.

    Empty frames (adjacent flags, as between ``...7e 7e...`` of two frames) are skipped. Bytes before the first
    flag are discarded and counted in ``garbage``; so are the bytes of a frame longer than ``max_frame`` (counted
    once in ``overlong``), which is dropped up to the next flag. At most ``max_frame`` bytes are held.
    """

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        if max_frame < 1:
            raise ValueError(f"max_frame must be positive, not {max_frame}")
        self.max_frame = max_frame
        self.garbage = 0
        """Bytes discarded: before the first flag, and those of overlong frames [byte]."""
        self.overlong = 0
        """Frames dropped for being longer than ``max_frame`` [1]."""
        self._parts: list[bytes] = []
        self._held = 0
        self._open = False  # a flag was seen: bytes belong to a frame
        self._dropping = False  # the current frame is overlong

    @property
    def pending(self) -> int:
        """Bytes held of an unfinished frame [byte]."""
        return self._held

    def feed(self, chunk: bytes) -> list[bytes]:
        """The frames that ``chunk`` completes, in order."""
        pieces = bytes(chunk).split(_FLAG_B)
        frames: list[bytes] = []
        self._extend(pieces[0])
        for piece in pieces[1:]:
            self._close(frames)
            self._extend(piece)
        return frames

    def _extend(self, piece: bytes) -> None:
        if not piece:
            return
        if not self._open or self._dropping:
            self.garbage += len(piece)
            return
        if self._held + len(piece) > self.max_frame:
            self.garbage += self._held + len(piece)
            self.overlong += 1
            self._dropping = True
            self._parts.clear()
            self._held = 0
            return
        self._parts.append(piece)
        self._held += len(piece)

    def _close(self, frames: list[bytes]) -> None:
        """A flag: end the current frame (if any) and open the next."""
        if self._held:
            frames.append(self._parts[0] if len(self._parts) == 1 else b"".join(self._parts))
        self._parts.clear()
        self._held = 0
        self._open = True
        self._dropping = False
