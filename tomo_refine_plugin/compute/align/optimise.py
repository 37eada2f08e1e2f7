"""Optimisation driver: a global per-tilt shift search, then L-BFGS on the analytic cost, repeated with
CC maps re-rendered at the refined geometry.

Why beyond RELION: RELION starts L-BFGS at zero from the input geometry; a tilt whose shift error puts
its particles' CC peaks near the edge of the ±r window (or whose angles pull the line search into a side
lobe) ends in a wrong optimum (golden ``align``: one tilt of 31 stays 6.9 px off). The sum of a tilt's
particles' *uncropped* CC maps peaks at the tilt's shift error over nearly the whole box, so searching
it globally first puts every tilt in the basin of the true optimum; the second round recentres the maps
and re-renders the predictions at the refined angles, removing the bias of looking up far from the map
centre with predictions made for the wrong view.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize

from .cost import AlignCost

__all__ = ["global_shift_search", "LbfgsResult", "run_lbfgs"]


def _parabolic(m1, m0, p1):
    den = m1 - 2.0 * m0 + p1
    if den >= 0:
        return 0.0
    return float(np.clip(0.5 * (m1 - p1) / den, -0.5, 0.5))


def global_shift_search(tilt_sums, max_shift_px: float, oversampling: int = 1) -> np.ndarray:
    """Per tilt, the displacement of the maximum of the summed CC map.

    Parameters
    ----------
    tilt_sums
        float64 ``(n_tilts, n, n)``, zero displacement at index ``n//2``, ``oversampling`` samples per px
        (:class:`.ccmaps.CCMaps`).
    max_shift_px
        Search radius (px) around zero displacement.

    Returns
    -------
    shifts
        float64 ``(n_tilts, 2)`` = (dx, dy) px, with a separable parabolic sub-pixel fit; 0 for a tilt
        whose map is all zero (no visible particle).
    """
    n_f, s, _ = tilt_sums.shape
    c = s // 2
    d = (np.arange(s) - c) / oversampling
    inside = (d[:, None] ** 2 + d[None, :] ** 2) <= max_shift_px ** 2
    out = np.zeros((n_f, 2))
    for f in range(n_f):
        m = tilt_sums[f]
        if not np.any(m):
            continue
        iy, ix = np.unravel_index(np.argmax(np.where(inside, m, -np.inf)), m.shape)
        fx = _parabolic(m[iy, ix - 1], m[iy, ix], m[iy, ix + 1]) if 0 < ix < s - 1 else 0.0
        fy = _parabolic(m[iy - 1, ix], m[iy, ix], m[iy + 1, ix]) if 0 < iy < s - 1 else 0.0
        out[f] = ((ix - c + fx) / oversampling, (iy - c + fy) / oversampling)
    return out


@dataclass(frozen=True)
class LbfgsResult:
    x: np.ndarray
    value: float
    initial_value: float
    n_iterations: int
    n_evaluations: int
    message: str


def run_lbfgs(cost: AlignCost, x0, max_iterations: int = 10000, history: int = 6, ftol: float = 1e-13) -> LbfgsResult:
    """Minimise ``cost`` from ``x0`` with L-BFGS (``history`` correction pairs, as liblbfgs' m = 6).

    Tolerances are tight (the cost is cheap; stopping early leaves sub-0.1 px error on the table).
    """
    x0 = np.asarray(x0, np.float64)
    initial = cost(x0)[0]
    if x0.size == 0:
        return LbfgsResult(x0, initial, initial, 0, 1, "no free parameters")
    res = minimize(cost, x0, jac=True, method="L-BFGS-B",
                   options={"maxcor": history, "maxiter": int(max_iterations), "ftol": ftol, "gtol": 1e-9,
                            "maxls": 40, "maxfun": 20 * int(max_iterations)})
    return LbfgsResult(np.asarray(res.x, np.float64), float(res.fun), float(initial), int(res.nit), int(res.nfev),
                       str(res.message))


def _ball(radius_px: float, step_px: float) -> np.ndarray:
    ax = np.arange(-np.floor(radius_px / step_px), np.floor(radius_px / step_px) + 1) * step_px
    gx, gy, gz = np.meshgrid(ax, ax, ax, indexing="ij")
    grid = np.stack([gx.ravel(), gy.ravel(), gz.ravel()], 1)
    return np.ascontiguousarray(grid[(grid ** 2).sum(1) <= radius_px ** 2 + 1e-9])


def particle_offset_search(maps, visible, projections, shifts_px, active, radius_px: int, min_tilts: int = 3,
                           oversampling: int = 1, coarse_step_px: float = 2.0, n_candidates: int = 8):
    """Per particle, the 3D offset (px) within a ball of radius ``radius_px`` that maximises the sum over tilts
    of its CC maps at the projected offset (tilt angles fixed, tilt shifts ``shifts_px`` applied).

    Why: L-BFGS from zero offset can walk a particle whose position error projects near the window edge out
    of its maps (where the data term is 0 and negative CC lobes push outwards); the golden ``align`` set has
    two such particles. Coarse to fine: every point of a ``coarse_step_px`` grid, then the 27 neighbours at
    1 px of each of the ``n_candidates`` best coarse points (a sharp peak between coarse points still ranks
    among the candidates). For ``r = 20`` that is ~6x fewer spline lookups than the full 1 px grid.

    Particles seen in fewer than ``min_tilts`` active tilts keep offset 0: their score is flat (all zero when
    never seen) along some direction, and an argmax there would throw them to the edge of the ball.

    Returns
    -------
    offsets
        float64 ``(n_particles, 3)``.
    """
    from ._kernels import offset_search_kernel

    r = float(radius_px)
    n_p = maps.shape[0]
    args = (np.ascontiguousarray(maps, np.float32),
            np.ascontiguousarray(np.asarray(projections, np.float64)[:, :2, :3]),
            np.ascontiguousarray(shifts_px, np.float64), np.ascontiguousarray(active, np.bool_),
            np.ascontiguousarray(visible, np.bool_), r, float(oversampling))
    coarse = _ball(r, coarse_step_px if r > 2 * coarse_step_px else 1.0)
    score = np.empty((n_p, coarse.shape[0]))
    offset_search_kernel(*args, coarse, score)
    k = min(n_candidates, coarse.shape[0])
    best = coarse[np.argsort(-score, axis=1, kind="stable")[:, :k]]              # (P, k, 3)
    steps = _ball(np.sqrt(3.0), 1.0)                                              # the 27 neighbours
    fine = (best[:, :, None, :] + steps[None, None]).reshape(n_p, -1, 3)
    fine = np.where((fine ** 2).sum(-1, keepdims=True) <= r * r + 1e-9, fine, best[:, :1, :])
    fine = np.ascontiguousarray(fine)
    fine_score = np.empty(fine.shape[:2])
    offset_search_kernel(*args, fine, fine_score)
    out = fine[np.arange(n_p), np.argmax(fine_score, axis=1)]
    seen = (np.asarray(visible, bool) & np.asarray(active, bool)[None]).sum(1)
    out[seen < min_tilts] = 0.0
    return out
