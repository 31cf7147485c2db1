"""Frames the hub builds itself must be exactly what a WebSocket parser expects."""

from __future__ import annotations

import pytest
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from leadscore.live.wsproto import frame_writer, text_frame


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65_535, 65_536, 200_000])
def test_text_frames_parse_as_one_final_unmasked_text_frame(size: int) -> None:
    payload = ("é" * (size // 2) + "x" * (size % 2)).encode()  # UTF-8: size counts bytes
    assert len(payload) == size
    reader = StreamReader()
    reader.feed_data(text_frame(payload) + text_frame(b'{"next":1}'))
    parsed = []
    for _ in range(2):
        parser = Frame.parse(reader.read_exact, mask=False)
        try:
            next(parser)
        except StopIteration as done:
            parsed.append(done.value)
    assert [(f.opcode, f.fin, f.data) for f in parsed] == [
        (Opcode.TEXT, True, payload),
        (Opcode.TEXT, True, b'{"next":1}'),
    ]


def test_frame_writer_comes_from_the_scope_extension_only() -> None:
    def write(frames: bytes) -> bool:
        return True

    assert frame_writer({"extensions": {"leadscore.frames": {"write": write}}}) is write
    assert frame_writer({"extensions": {"websocket.http.response": {}}}) is None
    assert frame_writer({}) is None
