"""Scipion/IMOD tilt-image geometry ↔ RELION 5 per-tilt angles and shifts, and coordinate frames.

Scipion stores a tilt series' alignment as one IMOD ``.xf``-style 2D transform per tilt image, a 3×3
homogeneous matrix in tilt-series pixels ``M = [[A00, A01, sx], [A10, A11, sy], [0, 0, 1]]``, plus the
tilt angle. The transform maps the raw image onto the aligned image, about the image centre ``c``::

    aligned − c = A · (raw − c) + s

and the aligned image is the projection of the tomogram with the tilt axis along +y:
``aligned − c = (cosθ·X + sinθ·Z, Y)`` for a point ``X`` in centred tomogram pixels, i.e. the first two
rows of ``Ry(θ)·X``. RELION 5 writes the same geometry as ``raw = Rz(ZRot)·Ry(YTilt)·Rx(XTilt)·X + c_R + t``
with ``c_R = (⌊W/2⌋, ⌊H/2⌋)`` (:func:`.conventions.relion_angles_to_projection`). Equating the two for a
pure rotation ``A = Rz₂(−ZRot)``::

    ZRot = atan2(A01, A00),   YTilt = θ,   XTilt = 0,   t = (c − c_R) − A⁻¹·s   (px)

which is RELION's own IMOD importer (``shift = −A⁻¹·s``) and reliontomo's writer when ``c = c_R``.

Which centre ``c``? Two conventions meet here, so it is an explicit argument (``centre=``):

* ``"relion"`` (default): ``c = (⌊W/2⌋, ⌊H/2⌋)`` in 0-based pixel indices. RELION's importer and
  scipion-em-reliontomo both assume this, so files round-trip with them bit for bit.
* ``"imod"``: IMOD's own centre, ``((W−1)/2, (H−1)/2)`` in 0-based indices (``nx/2`` in IMOD's
  pixel-edge coordinates). It equals the RELION centre for odd sizes and is half a pixel lower on
  each even axis, which moves the projection by ``(I − A⁻¹)·(½, ½)`` px.

An ``A`` that is not a pure rotation (IMOD's magnification/stretch solutions) cannot be written as RELION
angles. Its closest rotation (polar decomposition, ``atan2(A01 − A10, A00 + A11)``) is used and the shift
still uses the full ``A⁻¹``, so the tilt-axis centre stays exact; a scale deviation larger than
``max_scale_deviation`` is refused.

Particle positions: Scipion's ``Coordinate3D`` stores positions in tomogram pixels relative to the
tomogram origin, by default ``−dim/2·pix`` (so the stored value is relative to the float centre
``dim/2``). RELION's ``rlnCenteredCoordinate*Angst`` is relative to the same float centre (``size/2``),
so ``centred_Å = (stored − origin/pix − dim/2)·pix`` which is ``stored·pix`` for the default origin.
"""
from __future__ import annotations

import numpy as np

from .conventions import image_centre_px, rotation_y
from .errors import InputError

__all__ = [
    "imod_centre_px",
    "transform_centre_px",
    "imod_to_relion",
    "relion_to_imod",
    "project_imod",
    "scipion_to_centred_angst",
    "centred_angst_to_scipion",
]


def imod_centre_px(image_size_px) -> np.ndarray:
    """IMOD's transform centre in 0-based pixel indices: ``((W−1)/2, (H−1)/2)``, float64 ``(2,)``."""
    w, h = image_size_px
    return np.array([(w - 1) / 2.0, (h - 1) / 2.0])


def transform_centre_px(image_size_px, centre: str = "relion") -> np.ndarray:
    """Centre ``c`` about which the 2D transform acts, ``(2,)`` px; see the module docstring."""
    if centre == "relion":
        return image_centre_px(image_size_px)
    if centre == "imod":
        return imod_centre_px(image_size_px)
    raise ValueError(f"centre must be 'relion' or 'imod', got {centre!r}")


def _as_transforms(transforms_px) -> np.ndarray:
    m = np.asarray(transforms_px, dtype=np.float64)
    if m.ndim == 2:
        m = m[None]
    if m.shape[1:] not in ((3, 3), (2, 3)):
        raise ValueError(f"transforms must be (n, 3, 3) or (n, 2, 3), got {m.shape}")
    return m


def imod_to_relion(
    transforms_px,
    tilt_angles_deg,
    pixel_size_angst: float,
    image_size_px,
    centre: str = "relion",
    max_scale_deviation: float = 0.05,
):
    """RELION 5 per-tilt columns from Scipion/IMOD 2D transforms and tilt angles.

    Parameters
    ----------
    transforms_px
        ``(n_tilts, 3, 3)`` (or ``(n_tilts, 2, 3)``) float, IMOD ``.xf`` layout ``[[A, s], [0, 1]]``,
        shifts in tilt-series pixels.
    tilt_angles_deg
        ``(n_tilts,)`` tilt angles θ (degrees), YTilt.
    pixel_size_angst
        Tilt-series pixel size (Å/px).
    image_size_px
        ``(W, H)`` of the tilt images.
    centre
        ``"relion"`` or ``"imod"``: the transform centre convention (module docstring).
    max_scale_deviation
        Largest accepted ``|singular value − 1|`` of ``A``.

    Returns
    -------
    x_tilt_deg, y_tilt_deg, z_rot_deg, x_shift_angst, y_shift_angst
        Each float64 ``(n_tilts,)``.
    """
    m = _as_transforms(transforms_px)
    theta = np.asarray(tilt_angles_deg, dtype=np.float64).reshape(-1)
    if theta.shape[0] != m.shape[0]:
        raise ValueError(f"{m.shape[0]} transforms but {theta.shape[0]} tilt angles")
    a = m[:, :2, :2]
    s = m[:, :2, 2]
    sv = np.linalg.svd(a, compute_uv=False)
    worst = np.max(np.abs(sv - 1.0), axis=1)
    det = np.linalg.det(a)
    bad = np.flatnonzero((worst > max_scale_deviation) | (det <= 0))
    if bad.size:
        i = int(bad[0])
        raise InputError(
            f"tilt image {i + 1}: the 2D alignment transform {a[i].tolist()} is not a rotation "
            f"(singular values {sv[i].tolist()}, determinant {det[i]:.4f}); RELION's geometry has no "
            "magnification, stretch or mirror per tilt",
            field="tilt-image transform",
            fix="re-align the tilt series without magnification/stretch (IMOD: rotation and shifts only)",
        )
    z_rot = np.rad2deg(np.arctan2(a[:, 0, 1] - a[:, 1, 0], a[:, 0, 0] + a[:, 1, 1]))
    delta = transform_centre_px(image_size_px, centre) - image_centre_px(image_size_px)
    t_px = delta[None, :] - np.linalg.solve(a, s[..., None])[..., 0]
    n = m.shape[0]
    return np.zeros(n), theta.copy(), z_rot, t_px[:, 0] * pixel_size_angst, t_px[:, 1] * pixel_size_angst


def relion_to_imod(z_rot_deg, x_shift_angst, y_shift_angst, pixel_size_angst: float, image_size_px, centre="relion"):
    """Scipion/IMOD 2D transforms from RELION's ZRot and shifts (the inverse of :func:`imod_to_relion`).

    ``A = Rz₂(−ZRot)``, ``s = A·((c − c_R) − t)``. YTilt is the tilt angle; XTilt has no place in a
    2D transform and must be carried separately (the caller stores it).

    Returns
    -------
    transforms_px
        float64 ``(n_tilts, 3, 3)``.
    """
    z = np.deg2rad(np.asarray(z_rot_deg, dtype=np.float64).reshape(-1))
    t = np.stack([np.asarray(x_shift_angst, float).reshape(-1), np.asarray(y_shift_angst, float).reshape(-1)], -1)
    t = t / pixel_size_angst
    c, s = np.cos(z), np.sin(z)
    a = np.zeros((z.shape[0], 2, 2))
    a[:, 0, 0], a[:, 0, 1], a[:, 1, 0], a[:, 1, 1] = c, s, -s, c
    delta = transform_centre_px(image_size_px, centre) - image_centre_px(image_size_px)
    out = np.zeros((z.shape[0], 3, 3))
    out[:, :2, :2] = a
    out[:, :2, 2] = np.einsum("nij,nj->ni", a, delta[None, :] - t)
    out[:, 2, 2] = 1.0
    return out


def project_imod(points_centred_px, tilt_angles_deg, transforms_px, image_size_px, centre="relion") -> np.ndarray:
    """Raw-image positions of points under the Scipion/IMOD description (independent of RELION's).

    ``raw = c + A⁻¹·([Ry(θ)·X]_xy − s)``.

    Parameters
    ----------
    points_centred_px
        ``(n_particles, 3)`` positions relative to the tomogram centre, tilt-series px, (x, y, z).
    tilt_angles_deg
        ``(n_tilts,)``.
    transforms_px
        ``(n_tilts, 3, 3)``.

    Returns
    -------
    uv
        float64 ``(n_particles, n_tilts, 2)``, 0-based pixel (column, row).
    """
    m = _as_transforms(transforms_px)
    x = np.asarray(points_centred_px, dtype=np.float64).reshape(-1, 3)
    ry = rotation_y(np.asarray(tilt_angles_deg, float).reshape(-1))
    aligned = np.einsum("fij,nj->nfi", ry[:, :2, :], x) - m[None, :, :2, 2]
    a_inv = np.linalg.inv(m[:, :2, :2])
    return np.einsum("fij,nfj->nfi", a_inv, aligned) + transform_centre_px(image_size_px, centre)


def _origin_px(origin_shifts_angst, tomo_dim_px, pixel_size_angst):
    dim = np.asarray(tomo_dim_px, dtype=np.float64)
    if origin_shifts_angst is None:
        return -dim / 2.0
    return np.asarray(origin_shifts_angst, dtype=np.float64) / pixel_size_angst


def scipion_to_centred_angst(positions_px, pixel_size_angst, tomo_dim_px, origin_shifts_angst=None) -> np.ndarray:
    """``rlnCenteredCoordinate{X,Y,Z}Angst`` from Scipion ``Coordinate3D`` stored positions.

    ``centred = (stored − origin/pix − dim/2)·pix`` (bottom-left corner = ``stored − origin/pix``, as in
    ``Coordinate3D.getX(BOTTOM_LEFT_CORNER)``).

    Parameters
    ----------
    positions_px
        ``(n, 3)`` stored (``tomo.constants.SCIPION``) positions, tomogram px, (x, y, z).
    pixel_size_angst
        The coordinates' (tomogram's) pixel size.
    tomo_dim_px
        ``(nx, ny, nz)`` of the tomogram the coordinates refer to.
    origin_shifts_angst
        ``(3,)`` the tomogram's ``getShiftsFromOrigin()``; None = Scipion's default ``−dim/2·pix``.

    Returns
    -------
    centred_angst
        float64 ``(n, 3)``.
    """
    p = np.asarray(positions_px, dtype=np.float64).reshape(-1, 3)
    corner = p - _origin_px(origin_shifts_angst, tomo_dim_px, pixel_size_angst)
    return (corner - np.asarray(tomo_dim_px, float) / 2.0) * pixel_size_angst


def centred_angst_to_scipion(centred_angst, pixel_size_angst, tomo_dim_px, origin_shifts_angst=None) -> np.ndarray:
    """Inverse of :func:`scipion_to_centred_angst`: stored Scipion positions ``(n, 3)`` float64, px."""
    c = np.asarray(centred_angst, dtype=np.float64).reshape(-1, 3)
    corner = c / pixel_size_angst + np.asarray(tomo_dim_px, float) / 2.0
    return corner + _origin_px(origin_shifts_angst, tomo_dim_px, pixel_size_angst)
