"""Small vectorised helpers over (stations, time) arrays with NaN for missing."""

from __future__ import annotations

import numpy as np


def last_valid_index(observed: np.ndarray) -> np.ndarray:
    """(S,) index of each row's last True along axis 1; -1 where a row has none."""
    n = observed.shape[1]
    idx = n - 1 - np.argmax(observed[:, ::-1], axis=1)
    return np.where(observed.any(axis=1), idx, -1)


def forward_fill(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Carry each row's last finite value forward along axis 1 (causal: never looks ahead).

    Returns
    -------
    filled : ndarray, (S, T)
        NaN before a row's first finite value.
    age : ndarray of int, (S, T)
        Steps since the value used was observed (0 where observed; large before the first).
    """
    observed = np.isfinite(values)
    n = values.shape[1]
    positions = np.where(observed, np.arange(n, dtype=np.int32)[None, :], np.int32(-1))
    source = np.maximum.accumulate(positions, axis=1)
    filled = np.take_along_axis(values, np.maximum(source, 0), axis=1)
    filled = np.where(source >= 0, filled, np.nan)
    age = np.where(source >= 0, np.arange(n)[None, :] - source, np.iinfo(np.int32).max)
    return filled, age


def interpolate_gaps(values: np.ndarray) -> np.ndarray:
    """Linearly interpolate interior NaN gaps along axis 1; leading and trailing NaN stay.

    Used only for training targets, which all lie before the forecast origin.
    """
    observed = np.isfinite(values)
    n = values.shape[1]
    idx = np.arange(n)[None, :]
    before = np.maximum.accumulate(np.where(observed, idx, -1), axis=1)
    after = np.minimum.accumulate(np.where(observed, idx, n)[:, ::-1], axis=1)[:, ::-1]
    inside = (before >= 0) & (after < n)
    v_before = np.take_along_axis(values, np.clip(before, 0, n - 1), axis=1)
    v_after = np.take_along_axis(values, np.clip(after, 0, n - 1), axis=1)
    span = np.maximum(after - before, 1)
    weight = (idx - before) / span
    out = v_before + weight * (v_after - v_before)
    out = np.where(observed, values, np.where(inside, out, np.nan))
    return out


def causal_mean(values: np.ndarray, window: int) -> np.ndarray:
    """Mean of the finite values in ``(t - window, t]`` along axis 1; NaN where there are none."""
    finite = np.isfinite(values)
    zeros = np.zeros((values.shape[0], 1))
    csum = np.concatenate([zeros, np.cumsum(np.where(finite, values, 0.0), axis=1)], axis=1)
    ccount = np.concatenate([zeros, np.cumsum(finite, axis=1, dtype=float)], axis=1)
    n = values.shape[1]
    hi = np.arange(1, n + 1)
    lo = np.maximum(hi - window, 0)
    total = csum[:, hi] - csum[:, lo]
    count = ccount[:, hi] - ccount[:, lo]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / count, np.nan)


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
