"""Small vectorised helpers over (stations, time) arrays with NaN for missing."""

from __future__ import annotations

import numpy as np


def last_valid_index(observed: np.ndarray) -> np.ndarray:
    """(S,) index of each row's last True along axis 1; -1 where a row has none."""
    n = observed.shape[1]
    idx = n - 1 - np.argmax(observed[:, ::-1], axis=1)
    return np.where(observed.any(axis=1), idx, -1)


def nan_quantiles(values: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Quantiles along the last axis ignoring NaN, by one sort (no per-row Python loop).

    Parameters
    ----------
    values : ndarray, (..., N)
    q : ndarray, (Q,)
        Probabilities in [0, 1].

    Returns
    -------
    quantiles : ndarray, (..., Q)
        Linear interpolation between order statistics; NaN where a row has no value.
    count : ndarray of int, (...)
        Finite values per row.
    """
    ordered = np.sort(values, axis=-1)  # NaN sort last
    count = np.isfinite(values).sum(axis=-1)
    pos = np.asarray(q)[None, :] * np.maximum(count[..., None].reshape(-1, 1) - 1, 0)
    pos = pos.reshape(count.shape + (len(q),))
    lo = np.floor(pos).astype(np.intp)
    hi = np.minimum(lo + 1, np.maximum(count[..., None] - 1, 0))
    frac = pos - lo
    v_lo = np.take_along_axis(ordered, lo, axis=-1)
    v_hi = np.take_along_axis(ordered, hi, axis=-1)
    out = v_lo + frac * (v_hi - v_lo)
    return np.where(count[..., None] > 0, out, np.nan), count
