"""Synthetic series for the forecasting tests: seeded, small, generated here (no data files)."""

from __future__ import annotations

import numpy as np

from floodwatch.models._tide import CONSTITUENTS, FREQ_CPH

T0_S = 1_780_000_000.0  # 2026-05-28, an arbitrary epoch for the grid


def grid(days: float, dt_s: float = 1800.0) -> np.ndarray:
    """Regular UTC epoch-second grid of ``days`` ending at T0_S + days."""
    n = int(round(days * 86400.0 / dt_s))
    return T0_S + dt_s * np.arange(n)


def tide(
    t_s: np.ndarray, constituents: dict[str, tuple[float, float]], ref_s: float, mean_m: float = 0.0
) -> np.ndarray:
    """Sum of A cos(w (t - ref) - g) for {name: (A_m, g_deg)}: the fitted model's own form."""
    t_h = (np.asarray(t_s) - ref_s) / 3600.0
    out = np.full(t_h.shape, mean_m, dtype=float)
    for name, (amp_m, phase_deg) in constituents.items():
        freq = FREQ_CPH[CONSTITUENTS.index(name)]
        out = out + amp_m * np.cos(2 * np.pi * freq * t_h - np.radians(phase_deg))
    return out
