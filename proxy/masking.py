"""The server's side of RFC 6455's masking rule, as a plain object over the client's bytes.

"The server MUST close the connection upon receiving a frame that is not masked" (5.1).
:class:`ClientMasking` follows the frames of a client's byte stream just far enough to
read each frame's MASK bit (the payload is skipped, never copied); the replay server
feeds it every byte the client sends after the upgrade, before its WebSocket reader.
"""

from __future__ import annotations

from typing import Final

__all__ = ["ClientMasking"]

_MASK_BIT: Final = 0x80
_LENGTH_BITS: Final = 0x7F
_EXTENDED_LENGTH_SIZES: Final = {126: 2, 127: 8}
_MASK_KEY_SIZE: Final = 4


class ClientMasking:
    """Checks that every frame a client sends is masked."""

    def __init__(self) -> None:
        self._header = bytearray()
        self._header_size = 2
        self._payload_left = 0

    def feed(self, data: bytes) -> int | None:
        """Follow `data`, the next bytes from the client. Return the offset in `data` at
        which the first unmasked frame starts (0 if it started in an earlier chunk), or
        None when every frame so far is masked."""
        position, end = 0, len(data)
        while position < end:
            if self._payload_left:
                skipped = min(self._payload_left, end - position)
                self._payload_left -= skipped
                position += skipped
                continue
            self._header.append(data[position])
            position += 1
            if len(self._header) == 2:
                if not self._header[1] & _MASK_BIT:
                    return max(0, position - 2)
                length_code = self._header[1] & _LENGTH_BITS
                self._header_size = 2 + _EXTENDED_LENGTH_SIZES.get(length_code, 0) + _MASK_KEY_SIZE
            if len(self._header) == self._header_size:
                self._payload_left = self._payload_length()
                self._header.clear()
        return None

    def _payload_length(self) -> int:
        length_code = self._header[1] & _LENGTH_BITS
        extended = _EXTENDED_LENGTH_SIZES.get(length_code)
        if extended is None:
            return length_code
        return int.from_bytes(self._header[2 : 2 + extended], "big")
