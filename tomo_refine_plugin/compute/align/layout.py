"""The optimiser's parameter vector (static model, relion_align.md §2.2).

Layout: ``[n_tilts × (3 angles in mrad if fitted, 2 shifts in px if fitted)] [n_particles × 3 offsets in px if
fitted]``, tilts in tilt-table order (RELION uses chronological order; for the static model the order
is internal). Angles are mrad so that one unit of every parameter moves a point by a comparable number
of pixels (1 mrad at 1000 px ≈ 1 px), which keeps L-BFGS well scaled.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["AlignLayout"]


@dataclass(frozen=True)
class AlignLayout:
    """Which parameters are free, and where they sit in the vector.

    ``fit_angles = not --const_a``, ``fit_shifts = not --const_s``, ``fit_offsets = not --const_p``.
    """

    n_tilts: int
    n_particles: int
    fit_angles: bool = True
    fit_shifts: bool = True
    fit_offsets: bool = True

    @property
    def per_tilt(self) -> int:
        return 3 * self.fit_angles + 2 * self.fit_shifts

    @property
    def size(self) -> int:
        return self.n_tilts * self.per_tilt + 3 * self.n_particles * self.fit_offsets

    def pack(self, angles_mrad, shifts_px, offsets_px) -> np.ndarray:
        """float64 ``(size,)`` from ``angles_mrad (n_tilts, 3)`` = (φ, θ, ψ), ``shifts_px (n_tilts, 2)``,
        ``offsets_px (n_particles, 3)``; blocks that are not fitted are dropped."""
        blocks = []
        if self.fit_angles:
            blocks.append(np.asarray(angles_mrad, np.float64).reshape(self.n_tilts, 3))
        if self.fit_shifts:
            blocks.append(np.asarray(shifts_px, np.float64).reshape(self.n_tilts, 2))
        tilt = np.concatenate(blocks, 1).ravel() if blocks else np.zeros(0)
        off = np.asarray(offsets_px, np.float64).reshape(-1) if self.fit_offsets else np.zeros(0)
        if off.size != 3 * self.n_particles * self.fit_offsets:
            raise ValueError(f"expected {self.n_particles} offsets, got {off.size // 3}")
        return np.concatenate([tilt, off])

    def unpack(self, x) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Inverse of :meth:`pack`: ``(angles_mrad (n_tilts, 3), shifts_px (n_tilts, 2), offsets_px (n_particles, 3))``,
        zeros for blocks that are not fitted."""
        x = np.asarray(x, np.float64)
        if x.shape != (self.size,):
            raise ValueError(f"parameter vector has shape {x.shape}, layout expects ({self.size},)")
        nt = self.n_tilts * self.per_tilt
        tilt = x[:nt].reshape(self.n_tilts, self.per_tilt)
        angles = tilt[:, :3].copy() if self.fit_angles else np.zeros((self.n_tilts, 3))
        shifts = tilt[:, 3 * self.fit_angles:].copy() if self.fit_shifts else np.zeros((self.n_tilts, 2))
        offsets = x[nt:].reshape(self.n_particles, 3).copy() if self.fit_offsets else np.zeros((self.n_particles, 3))
        return angles, shifts, offsets
