"""One-row predictions through LightGBM's single-row fast C API.

`Booster.predict` spends ~50 µs per call in Python (parameter copies, a new predictor, array
checks) before any tree is walked; for one lead and three heads that dominates. The fast API
prepares the configuration once and predicts a row in a few microseconds, with the same
trees, so the answer matches `Booster.predict` (contributions exactly; raw scores to the
last bit or two, as the C++ sums in another order).
"""

from __future__ import annotations

import ctypes
import threading
from typing import Final

import lightgbm as lgb
import numpy as np
from lightgbm.basic import _LIB, _c_str, _safe_call  # type: ignore[attr-defined]

from leadscore.engine.raw import FloatArray

RAW_SCORE: Final = 1
CONTRIB: Final = 3
_FLOAT64: Final = 1


class SingleRowPredictor:
    """Raw score and TreeSHAP contributions of one row; a lock keeps the shared buffer safe."""

    def __init__(self, booster: lgb.Booster) -> None:
        self._booster = booster  # keeps the booster alive as long as the handles
        self._n_features = booster.num_feature()
        self._lock = threading.Lock()
        self._in = np.empty(self._n_features, dtype=np.float64)
        self._out = np.empty(self._n_features + 1, dtype=np.float64)
        self._out_len = ctypes.c_int64()
        # Pointers made once: building ctypes views per call costs more than the trees.
        self._in_ptr = self._in.ctypes.data_as(ctypes.c_void_p)
        self._out_ptr = self._out.ctypes.data_as(ctypes.POINTER(ctypes.c_double))
        self._out_len_ref = ctypes.byref(self._out_len)
        self._handles: dict[int, ctypes.c_void_p] = {}

    def _handle(self, predict_type: int) -> ctypes.c_void_p:
        handle = self._handles.get(predict_type)
        if handle is None:
            handle = ctypes.c_void_p()
            _safe_call(
                _LIB.LGBM_BoosterPredictForMatSingleRowFastInit(
                    self._booster._handle,
                    ctypes.c_int(predict_type),
                    ctypes.c_int(0),
                    ctypes.c_int(-1),
                    ctypes.c_int(_FLOAT64),
                    ctypes.c_int32(self._n_features),
                    _c_str("num_threads=1"),
                    ctypes.byref(handle),
                )
            )
            self._handles[predict_type] = handle
        return handle

    def _predict(self, row: FloatArray, predict_type: int) -> FloatArray:
        if row.shape != (self._n_features,):
            raise ValueError(f"expected {self._n_features} features, got {row.shape}")
        with self._lock:
            self._in[:] = row
            _safe_call(
                _LIB.LGBM_BoosterPredictForMatSingleRowFast(
                    self._handle(predict_type), self._in_ptr, self._out_len_ref, self._out_ptr
                )
            )
            return self._out[: self._out_len.value].copy()

    def raw_many(self, rows: FloatArray) -> FloatArray:
        """The raw margins of a few rows (a lead's what-if variants): one lock, one handle."""
        if rows.ndim != 2 or rows.shape[1] != self._n_features:
            raise ValueError(f"expected rows of {self._n_features} features, got {rows.shape}")
        out = np.empty(len(rows), dtype=np.float64)
        handle = self._handle(RAW_SCORE)
        predict = _LIB.LGBM_BoosterPredictForMatSingleRowFast
        with self._lock:
            for i, row in enumerate(rows):
                self._in[:] = row
                _safe_call(predict(handle, self._in_ptr, self._out_len_ref, self._out_ptr))
                out[i] = self._out[0]
        return out

    def contributions(self, row: FloatArray) -> FloatArray:
        """Per-feature TreeSHAP contributions of one row, the expected value last."""
        return self._predict(row, CONTRIB)

    def __del__(self) -> None:
        for handle in getattr(self, "_handles", {}).values():
            _LIB.LGBM_FastConfigFree(handle)
