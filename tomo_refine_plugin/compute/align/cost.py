"""The static alignment cost and its analytic gradient (relion_align.md §2.2, §3.5).

Model per tilt ``f``: ``P_f = T(c)·Q_f·T(−c)·P0_f + [dx_f, dy_f, 0]`` with ``Q = Rz(ψ)·Ry(θ)·Rx(φ)`` acting on
the camera frame ``(u, v, depth)`` and pivoting about the tomogram centre ``c`` (px) in that frame,
angles in mrad, shifts in px. Particle ``p`` sits at ``X_p + δ_p`` (px).
``E = Σ_pf −S_pf(Δ_pf) [+ λ·(|Δ|−r)² where |Δ| > r]``, ``Δ_pf = (P_f(X_p+δ_p))_{uv} − p0_pf``, with ``S`` the
cubic B-spline interpolation of the CC map (its coefficients, :func:`.ccmaps.spline_coefficients`; RELION uses
Catmull-Rom on the samples, whose sub-pixel bias on sharp peaks is ~4x larger); outside the map the data term is 0.
"""
from __future__ import annotations

import numpy as np

from ._kernels import cost_kernel
from .layout import AlignLayout

__all__ = ["ANGLE_SCALE", "tait_bryan", "apply_parameters", "AlignCost"]

ANGLE_SCALE = 1e-3  # parameters are mrad


def tait_bryan(angles_mrad) -> tuple[np.ndarray, np.ndarray]:
    """``Q = Rz(ψ)Ry(θ)Rx(φ)`` and ``dQ/d(φ, θ, ψ)`` (per radian) for ``angles_mrad (n, 3)``.

    Returns float64 ``(n, 3, 3)`` and ``(n, 3, 3, 3)`` (angle index second).
    """
    a = np.asarray(angles_mrad, np.float64).reshape(-1, 3) * ANGLE_SCALE
    n = a.shape[0]
    c, s = np.cos(a), np.sin(a)
    o, z = np.ones(n), np.zeros(n)

    def mat(*rows):
        return np.stack([np.stack(r, -1) for r in rows], -2)

    cx, cy, cz = c.T
    sx, sy, sz = s.T
    rx = mat((o, z, z), (z, cx, -sx), (z, sx, cx))
    drx = mat((z, z, z), (z, -sx, -cx), (z, cx, -sx))
    ry = mat((cy, z, sy), (z, o, z), (-sy, z, cy))
    dry = mat((-sy, z, cy), (z, z, z), (-cy, z, -sy))
    rz = mat((cz, -sz, z), (sz, cz, z), (z, z, o))
    drz = mat((-sz, -cz, z), (cz, -sz, z), (z, z, z))
    rzy = rz @ ry
    q = rzy @ rx
    dq = np.stack([rzy @ drx, rz @ dry @ rx, drz @ ry @ rx], 1)
    return np.ascontiguousarray(q), np.ascontiguousarray(dq)


def apply_parameters(projections, angles_mrad, shifts_px, pivot_px) -> np.ndarray:
    """New projections ``T(c)·Q·T(−c)·P0 + [dx, dy, 0]``; float64 ``(n_tilts, 4, 4)``."""
    p0 = np.asarray(projections, np.float64)
    q, _ = tait_bryan(angles_mrad)
    c = np.asarray(pivot_px, np.float64)
    out = p0.copy()
    out[:, :3, :3] = q @ p0[:, :3, :3]
    out[:, :3, 3] = np.einsum("fij,fj->fi", q, p0[:, :3, 3] - c) + c
    out[:, :2, 3] += np.asarray(shifts_px, np.float64)
    return out


class AlignCost:
    """Callable ``x → (E, ∇E)`` for :func:`scipy.optimize.minimize` (``jac=True``).

    Parameters
    ----------
    maps, centres_px, visible
        From :class:`.ccmaps.CCMaps`.
    projections
        float64 ``(n_tilts, 4, 4)``: the projections the maps were computed with (``P0``).
    positions_px
        float64 ``(n_particles, 3)`` static positions the maps were computed with.
    pivot_px
        ``(3,)`` tomogram centre ``size/2``.
    layout
        :class:`.layout.AlignLayout`.
    active
        bool ``(n_tilts,)`` tilts in the cost (``--min_frame``/``--max_frame``).
    oversampling
        CC-map samples per pixel (:class:`.ccmaps.CCMaps`).
    motion_px
        float64 ``(n_particles, n_tilts, 3)`` fixed displacements from input trajectories (px), or None.
    """

    def __init__(self, maps, centres_px, visible, projections, positions_px, pivot_px, layout: AlignLayout,
                 radius_px: int, range_reg: float = 0.0, active=None, oversampling: int = 1, motion_px=None):
        self.maps = np.ascontiguousarray(maps, np.float32)  # bulk data float32; the kernel sums in float64
        self.centres = np.ascontiguousarray(centres_px, np.float64)
        self.visible = np.ascontiguousarray(visible, np.bool_)
        p = np.asarray(projections, np.float64)
        self.model_rot = np.ascontiguousarray(p[:, :3, :3])
        self.model_trans = np.ascontiguousarray(p[:, :3, 3])
        self.positions = np.ascontiguousarray(positions_px, np.float64)
        self.pivot = np.ascontiguousarray(pivot_px, np.float64)
        self.layout = layout
        self.radius = float(radius_px)
        self.scale = float(oversampling)
        self.range_reg = float(range_reg)
        n_p, n_f = self.visible.shape
        self.motion = (np.zeros((n_p, n_f, 3)) if motion_px is None
                       else np.ascontiguousarray(motion_px, np.float64))
        self.active = np.ones(n_f, np.bool_) if active is None else np.ascontiguousarray(active, np.bool_)
        self._value = np.empty((n_p, n_f))
        self._gdelta = np.empty((n_p, n_f, 2))
        self._gangle = np.empty((n_p, n_f, 3))
        self._goffset = np.empty((n_p, 3))
        self.n_evaluations = 0

    def terms(self, x) -> np.ndarray:
        """Per-(particle, tilt) cost terms ``(n_particles, n_tilts)`` at ``x`` (a copy)."""
        self._evaluate(x)
        return self._value.copy()

    def _evaluate(self, x):
        angles, shifts, offsets = self.layout.unpack(x)
        q, dq = tait_bryan(angles)
        cost_kernel(self.maps, self.centres, self.positions, self.motion, np.ascontiguousarray(offsets), self.model_rot,
                    self.model_trans, q, dq, np.ascontiguousarray(shifts), self.pivot, self.active, self.visible,
                    self.radius, self.scale, self.range_reg, self._value, self._gdelta, self._gangle, self._goffset)
        self.n_evaluations += 1

    def __call__(self, x):
        x = np.asarray(x, np.float64)
        if not np.all(np.isfinite(x)):
            return np.finfo(np.float64).max, np.zeros_like(x)
        self._evaluate(x)
        value = float(self._value.sum())
        grad = self.layout.pack(self._gangle.sum(0) * ANGLE_SCALE, self._gdelta.sum(0), self._goffset)
        return value, grad
