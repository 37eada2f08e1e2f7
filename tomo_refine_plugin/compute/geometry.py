"""Tilt-series geometry and optics as frozen dataclasses, and the pure functions that use them.

Shapes use ``n_tilts`` (F, tilt-table order = frame index) and ``n_particles`` (N). Positions are in
decentred unbinned tilt-series pixels (see :mod:`.conventions`).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from .conventions import (
    projection_to_relion_angles,
    relion_angles_to_projection,
    tomogram_centre_px,
)

__all__ = [
    "TiltSeriesGeometry",
    "TiltSeriesOptics",
    "particle_positions_px",
    "centred_angst_from_positions_px",
    "project_points",
    "depth_offsets_px",
    "visible_in_frames",
]


def _frozen_array(a, dtype=np.float64, shape=None) -> np.ndarray:
    a = np.array(a, dtype=dtype)
    if shape is not None and a.shape != shape:
        raise ValueError(f"expected shape {shape}, got {a.shape}")
    a.setflags(write=False)
    return a


@dataclass(frozen=True, eq=False)
class TiltSeriesGeometry:
    """Projection geometry of one tilt series (RELION 5 per-tilt angles and shifts).

    Attributes
    ----------
    name
        ``rlnTomoName``.
    tomo_size_px
        ``(w0, h0, d0)``, unbinned tomogram extent (``rlnTomoSizeX/Y/Z``).
    image_size_px
        ``(W, H)`` of the tilt images.
    pixel_size_angst
        ``rlnTomoTiltSeriesPixelSize``.
    x_tilt_deg, y_tilt_deg, z_rot_deg
        ``(n_tilts,)``, ``rlnTomoXTilt/YTilt/ZRot``.
    shift_angst
        ``(n_tilts, 2)``, ``rlnTomoXShiftAngst/YShiftAngst``.
    hand
        ``rlnTomoHand`` (±1); sign of the depth-dependent defocus.
    defocus_slope
        ``rlnTomoDefocusSlope`` (1 by default).
    """

    name: str
    tomo_size_px: tuple
    image_size_px: tuple
    pixel_size_angst: float
    x_tilt_deg: np.ndarray
    y_tilt_deg: np.ndarray
    z_rot_deg: np.ndarray
    shift_angst: np.ndarray
    hand: float = -1.0
    defocus_slope: float = 1.0

    def __post_init__(self):
        n = np.asarray(self.y_tilt_deg).shape[0]
        object.__setattr__(self, "tomo_size_px", tuple(int(v) for v in self.tomo_size_px))
        object.__setattr__(self, "image_size_px", tuple(int(v) for v in self.image_size_px))
        for name in ("x_tilt_deg", "y_tilt_deg", "z_rot_deg"):
            object.__setattr__(self, name, _frozen_array(getattr(self, name), shape=(n,)))
        object.__setattr__(self, "shift_angst", _frozen_array(self.shift_angst, shape=(n, 2)))
        if len(self.tomo_size_px) != 3 or len(self.image_size_px) != 2:
            raise ValueError("tomo_size_px must have 3 entries and image_size_px 2")
        if not self.pixel_size_angst > 0:
            raise ValueError(f"pixel size must be positive, got {self.pixel_size_angst}")

    @property
    def n_tilts(self) -> int:
        return self.y_tilt_deg.shape[0]

    @property
    def centre_px(self) -> np.ndarray:
        """Tomogram centre ``size/2`` in decentred px, ``(3,)``."""
        return tomogram_centre_px(self.tomo_size_px)

    def projection_matrices(self) -> np.ndarray:
        """``(n_tilts, 4, 4)`` float64 projection matrices (:func:`.relion_angles_to_projection`)."""
        return relion_angles_to_projection(
            self.x_tilt_deg,
            self.y_tilt_deg,
            self.z_rot_deg,
            self.shift_angst[:, 0],
            self.shift_angst[:, 1],
            self.pixel_size_angst,
            self.tomo_size_px,
            self.image_size_px,
        )

    def with_projection_matrices(self, projections) -> "TiltSeriesGeometry":
        """A copy whose angles and shifts are decomposed from ``projections`` ``(n_tilts, 4, 4)``."""
        xt, yt, zr, sx, sy = projection_to_relion_angles(
            projections, self.pixel_size_angst, self.tomo_size_px, self.image_size_px
        )
        return replace(self, x_tilt_deg=xt, y_tilt_deg=yt, z_rot_deg=zr, shift_angst=np.stack([sx, sy], -1))


@dataclass(frozen=True, eq=False)
class TiltSeriesOptics:
    """Per-tilt CTF and dose parameters of one tilt series.

    Attributes
    ----------
    voltage_kv, cs_mm, amplitude_contrast
        From the global table.
    defocus_u_angst, defocus_v_angst, defocus_angle_deg
        ``(n_tilts,)``; positive defocus is underfocus.
    pre_exposure_e_per_angst2
        ``(n_tilts,)``, cumulative dose before each tilt (``rlnMicrographPreExposure``).
    ctf_scale
        ``(n_tilts,)``, ``rlnCtfScalefactor`` (1 by default).
    ctf_bfactor_angst2
        ``(n_tilts,)``, ``rlnCtfBfactor`` (0 by default).
    phase_shift_deg
        ``(n_tilts,)``, ``rlnPhaseShift`` (0 by default).
    bfactor_per_dose_angst2
        ``rlnCtfBfactorPerElectronDose``; 0 selects the Grant–Grigorieff dose model.
    even_zernike, odd_zernike
        Coefficients ``rlnEvenZernike`` / ``rlnOddZernike`` (may be empty).
    """

    voltage_kv: float
    cs_mm: float
    amplitude_contrast: float
    defocus_u_angst: np.ndarray
    defocus_v_angst: np.ndarray
    defocus_angle_deg: np.ndarray
    pre_exposure_e_per_angst2: np.ndarray
    ctf_scale: np.ndarray = None
    ctf_bfactor_angst2: np.ndarray = None
    phase_shift_deg: np.ndarray = None
    bfactor_per_dose_angst2: float = 0.0
    even_zernike: np.ndarray = field(default_factory=lambda: np.zeros(0))
    odd_zernike: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def __post_init__(self):
        n = np.asarray(self.defocus_u_angst).shape[0]
        defaults = {"ctf_scale": 1.0, "ctf_bfactor_angst2": 0.0, "phase_shift_deg": 0.0}
        for name in ("defocus_u_angst", "defocus_v_angst", "defocus_angle_deg", "pre_exposure_e_per_angst2"):
            object.__setattr__(self, name, _frozen_array(getattr(self, name), shape=(n,)))
        for name, default in defaults.items():
            value = getattr(self, name)
            value = np.full(n, default) if value is None else value
            object.__setattr__(self, name, _frozen_array(value, shape=(n,)))
        object.__setattr__(self, "even_zernike", _frozen_array(self.even_zernike))
        object.__setattr__(self, "odd_zernike", _frozen_array(self.odd_zernike))
        if not 0.0 <= self.amplitude_contrast < 1.0:
            raise ValueError(f"amplitude contrast must be in [0, 1), got {self.amplitude_contrast}")

    @property
    def n_tilts(self) -> int:
        return self.defocus_u_angst.shape[0]

    def frame_sequence(self) -> np.ndarray:
        """Tilt indices in chronological order (ascending pre-exposure, stable), ``(n_tilts,)`` int."""
        return np.argsort(self.pre_exposure_e_per_angst2, kind="stable")


def particle_positions_px(
    centred_angst, pixel_size_angst, tomo_size_px, origin_angst=None, subtomo_matrices=None
) -> np.ndarray:
    """Static particle positions in decentred px (``ParticleSet::getPosition``).

    ``p = X_cent/pix + size/2 − A_sub·origin/pix``.

    Parameters
    ----------
    centred_angst
        ``(n_particles, 3)``, ``rlnCenteredCoordinate{X,Y,Z}Angst``.
    origin_angst
        ``(n_particles, 3)``, ``rlnOrigin{X,Y,Z}Angst`` or None (no offsets applied).
    subtomo_matrices
        ``(n_particles, 3, 3)`` ``A_sub`` or None (identity).

    Returns
    -------
    positions
        float64 ``(n_particles, 3)``.
    """
    p = np.asarray(centred_angst, float) / pixel_size_angst + tomogram_centre_px(tomo_size_px)
    if origin_angst is not None:
        o = np.asarray(origin_angst, float) / pixel_size_angst
        if subtomo_matrices is not None:
            o = np.einsum("nij,nj->ni", np.asarray(subtomo_matrices, float), o)
        p = p - o
    return p


def centred_angst_from_positions_px(positions_px, pixel_size_angst, tomo_size_px) -> np.ndarray:
    """Inverse of :func:`particle_positions_px` without offsets: ``(p − size/2)·pix``, ``(n, 3)``."""
    return (np.asarray(positions_px, float) - tomogram_centre_px(tomo_size_px)) * pixel_size_angst


def project_points(projections, points_px) -> np.ndarray:
    """Image positions of 3D points.

    Parameters
    ----------
    projections
        ``(n_tilts, 4, 4)``.
    points_px
        ``(n_particles, 3)`` static points, or ``(n_particles, n_tilts, 3)`` per-frame points
        (trajectories).

    Returns
    -------
    uv
        float64 ``(n_particles, n_tilts, 2)``.
    """
    p = np.asarray(projections, float)
    x = np.asarray(points_px, float)
    if x.ndim == 2:
        return np.einsum("fij,nj->nfi", p[:, :2, :3], x) + p[None, :, :2, 3]
    return np.einsum("fij,nfj->nfi", p[:, :2, :3], x) + p[None, :, :2, 3]


def depth_offsets_px(projections, points_px, centre_px) -> np.ndarray:
    """Depth of each point relative to the tomogram centre along each tilt's beam: ``[R_f (p − c)]_z``.

    Returns float64 ``(n_particles, n_tilts)``. Multiply by ``hand · pix · defocus_slope`` for the
    defocus change in Å (``Tomogram::getDepthOffset``).
    """
    r = np.asarray(projections, float)[:, 2, :3]
    d = np.asarray(points_px, float) - np.asarray(centre_px, float)
    return d @ r.T


def visible_in_frames(uv, image_size_px, radius_px) -> np.ndarray:
    """RELION's visibility test ``r < u < W − r`` and ``r < v < H − r``; bool ``(n_particles, n_tilts)``."""
    w, h = image_size_px
    u, v = uv[..., 0], uv[..., 1]
    return (u > radius_px) & (u < w - radius_px) & (v > radius_px) & (v < h - radius_px)
