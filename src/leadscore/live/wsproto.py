"""uvicorn's sans-I/O WebSocket protocol with one ASGI extension: write ready-made frames.

Through plain ASGI every event costs each client its own `send`, frame and socket write. The
hub frames an event once and, with this extension, writes all the frames a client is due in
one call: one system call per client per flush instead of one per event. Clients see ordinary
text messages, one per event. Without the extension (another server) the hub uses plain ASGI.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping
from typing import Any, Final

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.http11 import Request
from websockets.protocol import State

#: Key in `scope["extensions"]`; its value holds `write(frames) -> bool`.
FRAMES_EXTENSION: Final = "leadscore.frames"
FrameWriter = Callable[[bytes], bool]


def text_frame(payload: bytes) -> bytes:
    """One unmasked, unfragmented server text frame (RFC 6455 §5.2) carrying UTF-8 `payload`."""
    size = len(payload)
    if size < 126:
        header = bytes((0x81, size))
    elif size < 65_536:
        header = struct.pack("!BBH", 0x81, 126, size)
    else:
        header = struct.pack("!BBQ", 0x81, 127, size)
    return header + payload


def frame_writer(scope: Mapping[str, Any]) -> FrameWriter | None:
    """The connection's frame writer when the server offers the extension."""
    extension = (scope.get("extensions") or {}).get(FRAMES_EXTENSION)
    return None if extension is None else extension.get("write")


class LiveWebSocketProtocol(WebSocketsSansIOProtocol):
    """The stock protocol, plus `write` for frames built by the application."""

    def handle_connect(self, event: Request) -> None:
        """Offer the extension in the scope the application receives."""
        super().handle_connect(event)
        if self.close_sent:  # refused during the handshake: no application runs
            return
        self.scope["extensions"][FRAMES_EXTENSION] = {"write": self.write_frames}

    def write_frames(self, frames: bytes) -> bool:
        """Write complete text frames now; False when the client cannot take them now.

        False means: paused by flow control (the client reads slower than we write), closing,
        or not yet open. The caller then queues and sends through ASGI, which waits.
        """
        if (
            not self.writable.is_set()
            or self.close_sent
            or self.disconnected
            or not self.handshake_complete
            or self.conn.state is not State.OPEN
            or self.transport.is_closing()
        ):
            return False
        self.transport.write(frames)
        return True
