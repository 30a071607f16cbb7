"""Harmonic tide analysis for many stations at once: fit by least squares, predict anywhere.

The split follows UTide's ``solve`` / ``reconstruct``: :func:`fit_tide` returns
one :class:`TideFit` holding everything :func:`predict_tide` needs.

What is fitted, per station, on the samples it observed in the window::

    level(t) = mean + trend * t  +  sum_c [ a_c cos(w_c t) + b_c sin(w_c t) ]

* The constituents come from one candidate table ordered by importance and
  are chosen per station by the Rayleigh criterion, as UTide does: a
  constituent is kept when its frequency differs from the mean (0 cph) and
  from every more important kept constituent by at least ``R / span_h``
  (``R = 1``), where ``span_h`` is the station's observed record length.
  One day of data resolves M2, K1 and overtides; two weeks add S2 and O1;
  four weeks N2 and Q1.
* Long-period constituents (Mm, MSf, Sa) are left out on purpose: over a
  30-day window they alias the slow river stage, and the residual model
  forecasts that part from recent levels and rain instead.
* The trend absorbs the slow stage change during the window so it does not
  leak into the harmonics; it is *not* extrapolated (the residual model owns
  the slow part), so a prediction is mean + harmonics.
* No nodal corrections: the nodal factors (18.6-year cycle) drift by at most
  about 0.3 % (K1; M2 0.1 %) over a 30-day window plus a 72 h horizon, so the
  fitted amplitudes and phases absorb them. Phases are relative to the window's reference time, not
  Greenwich phases; they are for comparing fits, not for tide tables.

Vectorisation: each station has its own mask and constituent set, so each has
its own normal equations ``(X^T W_s X) c_s = X^T W_s y_s``. ``X`` is shared, so
the Gram matrix over the full grid is computed once and each station only adds
(or removes) the rows it is missing (or holds), whichever set is smaller. The
stations' systems are then solved in one batched call.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

# Fundamental astronomical rates in degrees per mean solar hour (Doodson).
_TAU_DEG_H = 14.4920521  # mean lunar day
_S_DEG_H = 0.5490165  # moon's mean longitude
_H_DEG_H = 0.0410686  # sun's mean longitude
_P_DEG_H = 0.0046418  # lunar perigee
_P1_DEG_H = 0.0000020  # solar perigee

# Candidate constituents, most important first (the Rayleigh pass keeps the
# first of two it cannot separate). Doodson numbers (tau, s, h, p, N', p1).
_DOODSON: tuple[tuple[str, tuple[int, ...]], ...] = (
    ("M2", (2, 0, 0, 0, 0, 0)),
    ("K1", (1, 1, 0, 0, 0, 0)),
    ("S2", (2, 2, -2, 0, 0, 0)),
    ("O1", (1, -1, 0, 0, 0, 0)),
    ("N2", (2, -1, 0, 1, 0, 0)),
    ("P1", (1, 1, -2, 0, 0, 0)),
    ("K2", (2, 2, 0, 0, 0, 0)),
    ("Q1", (1, -2, 0, 1, 0, 0)),
    ("NU2", (2, -1, 2, -1, 0, 0)),
    ("MU2", (2, -2, 2, 0, 0, 0)),
    ("L2", (2, 1, 0, -1, 0, 0)),
    ("2N2", (2, -2, 0, 2, 0, 0)),
    ("J1", (1, 2, 0, -1, 0, 0)),
    ("M1", (1, 0, 0, 1, 0, 0)),
    ("OO1", (1, 3, 0, 0, 0, 0)),
    ("T2", (2, 2, -3, 0, 0, 1)),
    ("LDA2", (2, 1, -2, 1, 0, 0)),
    ("RHO1", (1, -2, 2, -1, 0, 0)),
    ("2Q1", (1, -3, 0, 2, 0, 0)),
    ("EPS2", (2, -3, 2, 1, 0, 0)),
    ("ETA2", (2, 3, 0, -1, 0, 0)),
    ("M3", (3, 0, 0, 0, 0, 0)),
)
# Shallow-water (compound) constituents, the t_tide / UTide shallow-water set:
# the river and the estuary bend the tide.
_COMPOUND: tuple[tuple[str, dict[str, int]], ...] = (
    ("M4", {"M2": 2}),
    ("MS4", {"M2": 1, "S2": 1}),
    ("MN4", {"M2": 1, "N2": 1}),
    ("M6", {"M2": 3}),
    ("MK3", {"M2": 1, "K1": 1}),
    ("2MS6", {"M2": 2, "S2": 1}),
    ("S4", {"S2": 2}),
    ("MK4", {"M2": 1, "K2": 1}),
    ("2MK3", {"M2": 2, "K1": -1}),
    ("M8", {"M2": 4}),
    ("MSN2", {"M2": 1, "S2": 1, "N2": -1}),
    ("2SM2", {"S2": 2, "M2": -1}),
    ("SO3", {"S2": 1, "O1": 1}),
    ("SK3", {"S2": 1, "K1": 1}),
    ("SN4", {"S2": 1, "N2": 1}),
    ("SK4", {"S2": 1, "K2": 1}),
    ("2MK5", {"M2": 2, "K1": 1}),
    ("2SK5", {"S2": 2, "K1": 1}),
    ("2MN6", {"M2": 2, "N2": 1}),
    ("2MK6", {"M2": 2, "K2": 1}),
    ("2SM6", {"S2": 2, "M2": 1}),
    ("MSK6", {"M2": 1, "S2": 1, "K2": 1}),
    ("3MK7", {"M2": 3, "K1": 1}),
)
# Order in which the Rayleigh pass considers them: the big astronomical ones,
# then the main overtides, then the rest.
_PRIORITY = (
    "M2", "K1", "S2", "O1", "M4", "N2", "P1", "K2", "Q1", "MS4", "M6", "MN4",
    "NU2", "MU2", "L2", "2N2", "MK3", "J1", "M1", "OO1", "2MK3", "M3", "S4", "2MS6",
    "MK4", "M8", "T2", "LDA2", "RHO1", "2Q1", "EPS2", "ETA2", "MSN2", "2SM2",
    "2MK5", "2SK5", "2MN6", "SK3", "SO3", "SN4", "SK4", "2MK6", "2SM6", "MSK6", "3MK7",
)


def _constituent_table() -> tuple[tuple[str, ...], np.ndarray]:
    rates = np.array([_TAU_DEG_H, _S_DEG_H, _H_DEG_H, _P_DEG_H, 0.0, _P1_DEG_H])
    speed_deg_h = {name: float(np.dot(d, rates)) for name, d in _DOODSON}
    for name, parts in _COMPOUND:
        speed_deg_h[name] = sum(k * speed_deg_h[p] for p, k in parts.items())
    names = tuple(_PRIORITY)
    freq_cph = np.array([speed_deg_h[n] / 360.0 for n in names])
    return names, freq_cph


CONSTITUENTS, FREQ_CPH = _constituent_table()

RAYLEIGH = 1.0
"""Rayleigh criterion: separate frequencies by at least this many cycles over the record."""

_SPAN_MISSING_FREE = 0.25
"""A record missing up to this share resolves constituents by its span; beyond, by its observed hours."""


@dataclass(frozen=True)
class TideFit:
    """Fitted harmonic tide of S stations.

    Attributes
    ----------
    ref_s : float
        Reference time (UTC epoch seconds) of the phases and the trend.
    names : tuple of str, (C,)
        Candidate constituents, in priority order.
    freq_cph : ndarray, (C,)
        Their frequencies, cycles per hour.
    active : ndarray of bool, (S, C)
        Constituents each station's record resolves (Rayleigh) and that were fitted.
    mean_m : ndarray, (S,)
        Mean level at ``ref_s`` (trend removed), metres; NaN without data.
    trend_m_per_h : ndarray, (S,)
        Trend over the window; fitted, never extrapolated.
    cos_m, sin_m : ndarray, (S, C)
        Harmonic coefficients, metres; 0 for inactive constituents.
    explained : ndarray, (S,)
        Share of the detrended variance the harmonics explain, 0..1.
    """

    ref_s: float
    names: tuple[str, ...]
    freq_cph: np.ndarray
    active: np.ndarray
    mean_m: np.ndarray
    trend_m_per_h: np.ndarray
    cos_m: np.ndarray
    sin_m: np.ndarray
    explained: np.ndarray

    @property
    def amplitude_m(self) -> np.ndarray:
        """(S, C) amplitude of each constituent, metres (0 where inactive)."""
        return np.hypot(self.cos_m, self.sin_m)

    @property
    def phase_deg(self) -> np.ndarray:
        """(S, C) phase lag g in ``A cos(w (t - ref) - g)``, degrees in [0, 360)."""
        return np.degrees(np.arctan2(self.sin_m, self.cos_m)) % 360.0


def select_constituents(span_h: np.ndarray, dt_h: float, n_obs: np.ndarray) -> np.ndarray:
    """Choose constituents per station by the Rayleigh criterion.

    Parameters
    ----------
    span_h : ndarray, (S,)
        Hours between each station's first and last observation.
    dt_h : float
        Sampling step, hours; constituents above 0.8 x Nyquist are dropped.
    n_obs : ndarray of int, (S,)
        Observations per station; at most ``(n_obs - 3) // 3`` constituents are
        kept so the fit has at least three samples per parameter.

    Returns
    -------
    ndarray of bool, (S, C)
    """
    span_h = np.asarray(span_h, dtype=float)
    n_stations = span_h.shape[0]
    active = np.zeros((n_stations, FREQ_CPH.size), dtype=bool)
    nyquist_cph = 0.5 / dt_h
    budget = np.maximum((np.asarray(n_obs) - 3) // 6, 0)
    kept = np.zeros(n_stations, dtype=int)
    # A loop over constituents (fixed, ~34), never over stations.
    for c, freq in enumerate(FREQ_CPH):
        if freq >= 0.8 * nyquist_cph:
            continue
        # Separation from the mean (0 cph) and from every kept, more important one.
        gaps = np.abs(freq - FREQ_CPH[:c])
        nearest = np.where(active[:, :c], gaps[None, :], np.inf).min(axis=1, initial=freq)
        ok = (nearest * span_h >= RAYLEIGH) & (kept < budget)
        active[:, c] = ok
        kept += ok
    return active


def _design(t_h: np.ndarray, span_scale_h: float) -> np.ndarray:
    """Columns [1, t/scale, cos(w_1 t), sin(w_1 t), ...] at times t_h, shape (T, 2 + 2C)."""
    phase = 2.0 * np.pi * t_h[:, None] * FREQ_CPH[None, :]
    x = np.empty((t_h.size, 2 + 2 * FREQ_CPH.size))
    x[:, 0] = 1.0
    x[:, 1] = t_h / span_scale_h
    x[:, 2::2] = np.cos(phase)
    x[:, 3::2] = np.sin(phase)
    return x


def _masked_gram(x: np.ndarray, observed: np.ndarray, chunk: int = 512) -> np.ndarray:
    """Per-station Gram matrices ``X^T diag(observed_s) X``, shape (S, P, P).

    Each station gathers whichever of its observed or missing rows is fewer:
    the full-grid Gram is shared, so a station missing 5 % costs 5 % of a fit.
    """
    n_stations, n_times = observed.shape
    gram_full = x.T @ x
    n_obs = observed.sum(axis=1)
    use_missing = n_obs > n_times // 2
    pick = np.where(use_missing[:, None], ~observed, observed)
    out = np.empty((n_stations, x.shape[1], x.shape[1]))
    for start in range(0, n_stations, chunk):  # memory blocking, not per-station maths
        block = pick[start : start + chunk]
        counts = block.sum(axis=1)
        width = max(int(counts.max(initial=0)), 1)
        rows, cols = np.nonzero(block)
        slot = np.arange(rows.size) - np.repeat(np.cumsum(counts) - counts, counts)
        index = np.full((block.shape[0], width), n_times, dtype=np.intp)
        index[rows, slot] = cols
        x_pad = np.vstack([x, np.zeros((1, x.shape[1]))])
        gathered = x_pad[index]  # (B, width, P); padding rows are zero
        part = np.matmul(gathered.transpose(0, 2, 1), gathered)
        flip = use_missing[start : start + chunk]
        out[start : start + chunk] = np.where(flip[:, None, None], gram_full[None] - part, part)
    return out


_ITERATE_MAX_MISSING = 0.25
_RIDGE_REL = 1e-9  # a whisper of ridge keeps gappy records solvable without biasing clean ones


def _missing_index(pick: np.ndarray, n_times: int) -> np.ndarray:
    """Column indices of each row's True entries, padded with ``n_times`` (a zero row): (B, width)."""
    counts = pick.sum(axis=1)
    width = max(int(counts.max(initial=0)), 1)
    rows, cols = np.nonzero(pick)
    slot = np.arange(rows.size) - np.repeat(np.cumsum(counts) - counts, counts)
    index = np.full((pick.shape[0], width), n_times, dtype=np.intp)
    index[rows, slot] = cols
    return index


def _pcg_masked(
    x: np.ndarray, observed: np.ndarray, use: np.ndarray, rhs: np.ndarray, chunk: int = 128
) -> np.ndarray:
    """Solve every station's masked normal equations by preconditioned conjugate gradients.

    ``G_s = G - X_m^T X_m``: the full-grid Gram minus the station's missing rows.
    Preconditioned with the full-grid Gram's inverse, the system is the
    identity minus a small (missing share) perturbation, so a handful of
    iterations reach machine precision, at the cost of touching only the
    missing rows. Inactive columns are identity rows.
    """
    n_stations, n_params = use.shape
    n_times = x.shape[0]
    gram_full = x.T @ x
    ridge = _RIDGE_REL * np.diag(gram_full)
    patterns, which = np.unique(use, axis=0, return_inverse=True)
    which = which.reshape(-1)
    precond = np.empty((patterns.shape[0], n_params, n_params))
    for k, pattern in enumerate(patterns):  # a few distinct constituent sets, not stations
        m = np.where(pattern[:, None] & pattern[None, :], gram_full, 0.0)
        m[np.diag_indices(n_params)] = np.where(pattern, np.diag(gram_full) + ridge, 1.0)
        precond[k] = np.linalg.inv(m)
    x_pad = np.vstack([x, np.zeros((1, n_params))])
    out = np.zeros((n_stations, n_params))
    for start in range(0, n_stations, chunk):  # memory blocking, not per-station maths
        blk = slice(start, start + chunk)
        u = use[blk]
        xm = x_pad[_missing_index(~observed[blk], n_times)]  # (B, m, P)
        b = rhs[blk]
        group = which[blk]

        # The chunk's arrays are bound as defaults: each closure is used within its own chunk.
        def apply(v: np.ndarray, u: np.ndarray = u, xm: np.ndarray = xm) -> np.ndarray:
            vu = np.where(u, v, 0.0)
            miss = np.matmul(xm, vu[..., None])
            av = vu @ gram_full + ridge * vu - np.matmul(xm.transpose(0, 2, 1), miss)[..., 0]
            return np.where(u, av, v)

        def precondition(r: np.ndarray, group: np.ndarray = group) -> np.ndarray:
            z = np.empty_like(r)
            for k in np.unique(group):
                sel = group == k
                z[sel] = r[sel] @ precond[k]
            return z

        sol = precondition(b)
        res = b - apply(sol)
        z = precondition(res)
        direction = z.copy()
        rz = (res * z).sum(axis=1)
        b_norm = np.maximum((b * b).sum(axis=1), 1e-300)
        for _ in range(_PCG_MAX_ITER):
            # Converged stations stop moving, so a station's answer never depends on its neighbours.
            going = (res * res).sum(axis=1) > 1e-22 * b_norm  # 1e-11 relative: far below a millimetre
            if not going.any():
                break
            ad = apply(direction)
            denom = (direction * ad).sum(axis=1)
            alpha = np.where(going & (denom > 0), rz / np.where(denom > 0, denom, 1.0), 0.0)
            sol += alpha[:, None] * direction
            res -= alpha[:, None] * ad
            z = precondition(res)
            rz_new = (res * z).sum(axis=1)
            beta = np.where(rz > 0, rz_new / np.where(rz > 0, rz, 1.0), 0.0)
            direction = z + beta[:, None] * direction
            rz = rz_new
        out[blk] = np.where(u, sol, 0.0)
    return out


_PCG_MAX_ITER = 60


def _direct_masked(x: np.ndarray, observed: np.ndarray, use: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """Solve each station's normal equations from its own Gram matrix (for gappy records)."""
    n_params = x.shape[1]
    gram = _masked_gram(x, observed)
    both = use[:, :, None] & use[:, None, :]
    gram = np.where(both, gram, 0.0)
    diag = np.arange(n_params)
    gram[:, diag, diag] = np.where(use, gram[:, diag, diag] * (1.0 + _RIDGE_REL) + 1e-12, 1.0)
    return np.where(use, np.linalg.solve(gram, np.where(use, rhs, 0.0)[..., None])[..., 0], 0.0)


def _mean_trend_ssr(trend: np.ndarray, y0: np.ndarray, observed: np.ndarray, yy: np.ndarray) -> np.ndarray:
    """Residual sum of squares of a mean + trend fit alone, per station (S,)."""
    w = observed.astype(float)
    n = w.sum(axis=1)
    st = w @ trend
    stt = w @ (trend**2)
    sy = y0.sum(axis=1)
    sty = y0 @ trend
    det = n * stt - st**2
    with np.errstate(invalid="ignore", divide="ignore"):
        a = np.where(det > 0, (stt * sy - st * sty) / det, np.where(n > 0, sy / np.maximum(n, 1), 0.0))
        b = np.where(det > 0, (n * sty - st * sy) / det, 0.0)
    return np.maximum(yy - a * sy - b * sty, 0.0)


def fit_tide(t_s: np.ndarray, level_m: np.ndarray, *, ref_s: float | None = None) -> TideFit:
    """Fit the harmonic tide of every station on its observed samples.

    Parameters
    ----------
    t_s : ndarray, (T,)
        Regular time grid, UTC epoch seconds, strictly increasing.
    level_m : ndarray, (S, T)
        Levels, metres; NaN where missing or QC-failed (masked, never read).
    ref_s : float, optional
        Reference time of phases and trend; defaults to the last grid time.

    Returns
    -------
    TideFit
    """
    t_s = np.asarray(t_s, dtype=float)
    level_m = np.asarray(level_m, dtype=float)
    n_stations, n_times = level_m.shape
    ref_s = float(t_s[-1]) if ref_s is None else float(ref_s)
    dt_h = float(t_s[1] - t_s[0]) / 3600.0 if n_times > 1 else 1.0
    observed = np.isfinite(level_m)
    n_obs = observed.sum(axis=1)
    first = np.argmax(observed, axis=1)
    last = n_times - 1 - np.argmax(observed[:, ::-1], axis=1)
    span_h = np.where(n_obs > 0, (t_s[last] - t_s[first]) / 3600.0, 0.0)
    # A record that is mostly gaps resolves what its observed hours resolve, not what its first
    # and last sample span: two days of readings a month apart separate no more constituents
    # than two days (and fitted as if they did, the harmonics explode between the readings: a
    # river gauge was once forecast 24 m below its bed). Up to a quarter missing costs nothing.
    span_h = np.minimum(span_h, n_obs * dt_h / (1.0 - _SPAN_MISSING_FREE))
    active = select_constituents(span_h, dt_h, n_obs)

    t_h = (t_s - ref_s) / 3600.0
    span_scale_h = max(float(t_h[-1] - t_h[0]), dt_h)
    x = _design(t_h, span_scale_h)
    n_params = x.shape[1]
    # Which columns each station fits: mean always, trend with >= 3 samples, harmonics by Rayleigh.
    use = np.zeros((n_stations, n_params), dtype=bool)
    use[:, 0] = n_obs > 0
    use[:, 1] = n_obs >= 3
    use[:, 2::2] = active
    use[:, 3::2] = active

    # Only columns some station uses enter the algebra.
    cols = np.nonzero(use.any(axis=0))[0]
    coef = np.zeros((n_stations, n_params))
    if cols.size:
        x_u = x[:, cols]
        use_u = use[:, cols]
        y0 = np.where(observed, level_m, 0.0)
        rhs = np.where(use_u, y0 @ x_u, 0.0)
        n_missing = n_times - n_obs
        # Few gaps: iterate from the shared full-grid Gram. Many: build each Gram from its rows.
        iterate = (n_obs > 0) & (n_missing <= _ITERATE_MAX_MISSING * n_times)
        sub = np.zeros((n_stations, cols.size))
        if iterate.any():
            sub[iterate] = _pcg_masked(x_u, observed[iterate], use_u[iterate], rhs[iterate])
        direct = ~iterate
        if direct.any():
            sub[direct] = _direct_masked(x_u, observed[direct], use_u[direct], rhs[direct])
        coef[:, cols] = sub
        # Explained share from sums of squares: at the solution G c = b, so SSR = y.y - c.b.
        yy = (y0**2).sum(axis=1)
        ssr_full = np.maximum(yy - (sub * rhs).sum(axis=1), 0.0)
        ssr_mean_trend = _mean_trend_ssr(x[:, 1], y0, observed, yy)
        with np.errstate(invalid="ignore", divide="ignore"):
            explained = np.clip(1.0 - ssr_full / ssr_mean_trend, 0.0, 1.0)
        explained = np.where(np.isfinite(explained) & (n_obs > 2), explained, 0.0)
    else:
        explained = np.zeros(n_stations)
    mean_m = np.where(n_obs > 0, coef[:, 0], np.nan)
    return TideFit(
        ref_s=ref_s,
        names=CONSTITUENTS,
        freq_cph=FREQ_CPH.copy(),
        active=active,
        mean_m=mean_m,
        trend_m_per_h=coef[:, 1] / span_scale_h,
        cos_m=coef[:, 2::2],
        sin_m=coef[:, 3::2],
        explained=explained,
    )


def predict_tide(
    fit: TideFit, t_s: np.ndarray, *, harmonics: np.ndarray | None = None, single: bool = False
) -> np.ndarray:
    """Mean plus harmonics at times ``t_s``; the trend is not extrapolated.

    Parameters
    ----------
    fit : TideFit
    t_s : ndarray, (T,) or (S, T)
        Times, UTC epoch seconds, shared by all stations or one row per station.
    harmonics : ndarray of bool, (S,), optional
        Stations whose harmonics to include; the others get their mean only.
    single : bool
        Sum the harmonics in single precision (half the time; a tenth of a micrometre off),
        for the many times a forecast's features read; 1-D ``t_s`` only.

    Returns
    -------
    ndarray, (S, T)
        Predicted level, metres.
    """
    t_h = (np.asarray(t_s, dtype=float) - fit.ref_s) / 3600.0
    coef_cos, coef_sin = fit.cos_m, fit.sin_m
    if harmonics is not None:
        coef_cos = np.where(harmonics[:, None], coef_cos, 0.0)
        coef_sin = np.where(harmonics[:, None], coef_sin, 0.0)
    if t_h.ndim == 1:
        phase = 2.0 * np.pi * t_h[:, None] * fit.freq_cph[None, :]
        if single:
            # Only the constituents some station uses enter the product.
            cols = np.nonzero((coef_cos != 0).any(axis=0) | (coef_sin != 0).any(axis=0))[0]
            both = np.concatenate([coef_cos[:, cols], coef_sin[:, cols]], axis=1).astype(np.float32)
            basis = np.concatenate([np.cos(phase[:, cols]), np.sin(phase[:, cols])], axis=1).astype(np.float32)
            return fit.mean_m[:, None] + (both @ basis.T)
        wave = coef_cos @ np.cos(phase).T + coef_sin @ np.sin(phase).T
    else:
        phase = 2.0 * np.pi * t_h[..., None] * fit.freq_cph
        wave = np.einsum("sc,stc->st", coef_cos, np.cos(phase)) + np.einsum(
            "sc,stc->st", coef_sin, np.sin(phase)
        )
    return fit.mean_m[:, None] + wave


def leave_block_out_residual(
    fit: TideFit,
    t_s: np.ndarray,
    residual_m: np.ndarray,
    n_blocks: int,
    stations: np.ndarray,
) -> np.ndarray:
    """The residual each block would show had the tide been fitted without it.

    An in-sample residual is orthogonal to the fitted harmonics over the window:
    the fit has absorbed the window's own surge at tidal frequencies, and a
    forecast, whose target lies outside the fit, faces errors the in-sample
    residual never shows. Splitting the window into ``n_blocks`` contiguous
    blocks, block k's residual is taken from the fit without block k (the same
    constituents), by the leave-block-out identity of least squares::

        c_{-k} = c - (G - X_k^T X_k)^{-1} X_k^T e_k,
        r_{-k} = r_k + X_k (c - c_{-k})      (mean and harmonics; the trend is never predicted)

    with ``e_k`` the full fit's errors in the block. ``G - X_k^T X_k`` is the
    full grid's (one inverse per constituent set and block, shared by all
    stations; a station's few missing samples are not taken out of it), so
    the cost is two passes of the design over each station's grid. The last
    block, which holds the forecast origin, keeps the full fit's residual: its
    rows share the origin's features.

    Parameters
    ----------
    fit : TideFit
        The fit on the whole window.
    t_s : ndarray, (T,)
        The grid the fit was made on.
    residual_m : ndarray, (S, T)
        ``level - (mean + harmonics)`` of the full fit; NaN where missing.
    n_blocks : int
        Blocks the window is split into.
    stations : ndarray of bool, (S,)
        Stations to treat (tidal, few gaps); the others keep ``residual_m``.

    Returns
    -------
    ndarray, (S, T)
    """
    t_s = np.asarray(t_s, dtype=float)
    n_times = t_s.size
    out = residual_m.copy()
    if n_blocks < 2 or not stations.any():
        return out
    sel = np.nonzero(stations)[0]
    t_h = (t_s - fit.ref_s) / 3600.0
    dt_h = float(t_s[1] - t_s[0]) / 3600.0 if n_times > 1 else 1.0
    span_scale_h = max(float(t_h[-1] - t_h[0]), dt_h)
    x = _design(t_h, span_scale_h)
    use = np.zeros((sel.size, x.shape[1]), dtype=bool)
    use[:, :2] = True
    use[:, 2::2] = fit.active[sel]
    use[:, 3::2] = fit.active[sel]
    cols = np.nonzero(use.any(axis=0))[0]
    x = x[:, cols]
    use = use[:, cols]
    n_params = cols.size
    coef = np.zeros((sel.size, x.shape[1]))
    coef[:, 0] = fit.mean_m[sel]
    coef[:, 1] = fit.trend_m_per_h[sel] * span_scale_h
    harm = np.stack([fit.cos_m[sel], fit.sin_m[sel]], axis=2).reshape(sel.size, -1)  # c0 s0 c1 s1 ...
    coef[:, 2:] = harm[:, cols[2:] - 2]
    # The full fit's errors (the trend included), 0 where missing.
    errors = residual_m[sel] - coef[:, 1:2] * x[None, :, 1]
    errors = np.where(np.isfinite(errors), errors, 0.0)
    gram_full = x.T @ x
    ridge = _RIDGE_REL * np.diag(gram_full)
    patterns, which = np.unique(use, axis=0, return_inverse=True)
    which = which.reshape(-1)
    edges = np.linspace(0, n_times, n_blocks + 1).astype(int)
    predict_cols = np.ones(n_params, dtype=bool)
    predict_cols[1] = False  # the trend is fitted, never predicted
    for k in range(n_blocks - 1):  # a loop over blocks, not stations
        lo, hi = int(edges[k]), int(edges[k + 1])
        x_k = x[lo:hi]
        rhs = errors[:, lo:hi] @ x_k  # (S', P)
        gram_out = gram_full - x_k.T @ x_k
        shift = np.zeros_like(rhs)
        for p, pattern in enumerate(patterns):  # a few constituent sets, not stations
            members = which == p
            m = np.where(pattern[:, None] & pattern[None, :], gram_out, 0.0)
            m[np.diag_indices(n_params)] = np.where(pattern, np.diag(gram_out) + ridge, 1.0)
            shift[members] = np.where(pattern, rhs[members], 0.0) @ np.linalg.inv(m).T
        shift[:, ~predict_cols] = 0.0
        out[sel, lo:hi] = residual_m[sel, lo:hi] + shift @ x_k.T
    return out


def retime_tide(tide: TideFit, shift_s: np.ndarray) -> TideFit:
    """The same tides on time axes moved by ``shift_s`` per station: the result at ``t`` is the
    original at ``t + shift_s`` (each harmonic's phase turned by its frequency times the shift).

    Parameters
    ----------
    tide : TideFit
    shift_s : ndarray, (S,)
        Seconds.
    """
    angle = 2.0 * np.pi * (np.asarray(shift_s, dtype=float)[:, None] / 3600.0) * tide.freq_cph[None, :]
    cos_a, sin_a = np.cos(angle), np.sin(angle)
    return replace(
        tide,
        cos_m=tide.cos_m * cos_a + tide.sin_m * sin_a,
        sin_m=tide.sin_m * cos_a - tide.cos_m * sin_a,
    )
