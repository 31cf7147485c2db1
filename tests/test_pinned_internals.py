"""The private internals two modules lean on are still there, in the versions the lock allows.

`live/wsproto.py` subclasses uvicorn's sans-I/O WebSocket protocol and `engine/fastpath.py`
calls LightGBM's single-row C API through its private ctypes handle. pyproject.toml caps both
packages below the next release; raising a cap is safe only while these tests pass.
"""

from __future__ import annotations

import inspect

import lightgbm.basic
from uvicorn.protocols.websockets import websockets_sansio_impl

# What LiveWebSocketProtocol calls or reads on its parent and on each instance.
PROTOCOL_METHODS = ("handle_connect",)
PROTOCOL_STATE = ("writable", "close_sent", "disconnected", "handshake_complete", "conn",
                  "transport", "scope")  # fmt: skip
LIGHTGBM_CALLS = (
    "LGBM_BoosterPredictForMatSingleRowFastInit",
    "LGBM_BoosterPredictForMatSingleRowFast",
    "LGBM_FastConfigFree",
)


def test_uvicorn_sansio_protocol_keeps_what_the_subclass_uses() -> None:
    parent = websockets_sansio_impl.WebSocketsSansIOProtocol
    for name in PROTOCOL_METHODS:
        assert callable(getattr(parent, name, None)), f"uvicorn moved {name}"
    source = inspect.getsource(parent)
    for name in PROTOCOL_STATE:
        assert f"self.{name}" in source, f"uvicorn's protocol no longer sets self.{name}"


def test_lightgbm_private_c_api_handle_is_still_there() -> None:
    for name in ("_LIB", "_c_str", "_safe_call"):
        assert hasattr(lightgbm.basic, name), f"lightgbm.basic no longer has {name}"
    library = lightgbm.basic._LIB
    for call in LIGHTGBM_CALLS:
        assert hasattr(library, call), f"LightGBM's library no longer exports {call}"
