"""RELION 5 conventions as small converters: rotations, ZYZ Euler angles, projection matrices.

Every formula here is RELION's (``src/jaz/gravis/t3Matrix.h``, ``Euler_angles_relion.h``,
``Tomogram::setProjectionMatrix``), restated; see ``docs`` in the README for the table of frames.

Frames and units
----------------
* Tomogram frame: decentred, unbinned tilt-series pixels, ``(x, y, z)``; voxel ``(0,0,0)`` is a corner.
* Image frame: tilt-image pixels ``(u, v)``, 0-based, ``u`` = column (the fastest MRC axis).
* Angles in degrees, shifts in Å, as in the STAR files.

Deliberate deviation (relion#1280)
----------------------------------
RELION projects with the *integer* tomogram centre ``floor(size/2)`` but places particles with the
*floating-point* centre ``size/2``. For an odd tomogram size every particle lands 0.5 px off per odd
axis, and every write/read of the angles drifts the tilt by ``R·(½,…)``. Here both use the float
centre ``size/2`` (see :func:`tomogram_centre_px`), so centred coordinates project to the same image
point whatever the parity, and :func:`projection_to_relion_angles` inverts
:func:`relion_angles_to_projection` exactly. For even sizes (every RELION-made tomogram set we have
seen) the two conventions agree to the bit.
"""
from __future__ import annotations

import numpy as np

__all__ = [
    "rotation_x",
    "rotation_y",
    "rotation_z",
    "euler_zyz_to_matrix",
    "matrix_to_euler_zyz",
    "tomogram_centre_px",
    "image_centre_px",
    "relion_angles_to_projection",
    "projection_to_relion_angles",
]


def _as_rad(angle_deg):
    return np.deg2rad(np.asarray(angle_deg, dtype=np.float64))


def rotation_x(angle_deg) -> np.ndarray:
    """Right-handed active rotation about x: ``[[1,0,0],[0,c,-s],[0,s,c]]``. Shape ``(..., 3, 3)``."""
    a = _as_rad(angle_deg)
    c, s = np.cos(a), np.sin(a)
    o, z = np.ones_like(a), np.zeros_like(a)
    return np.stack([np.stack([o, z, z], -1), np.stack([z, c, -s], -1), np.stack([z, s, c], -1)], -2)


def rotation_y(angle_deg) -> np.ndarray:
    """Right-handed active rotation about y: ``[[c,0,s],[0,1,0],[-s,0,c]]``. Shape ``(..., 3, 3)``."""
    a = _as_rad(angle_deg)
    c, s = np.cos(a), np.sin(a)
    o, z = np.ones_like(a), np.zeros_like(a)
    return np.stack([np.stack([c, z, s], -1), np.stack([z, o, z], -1), np.stack([-s, z, c], -1)], -2)


def rotation_z(angle_deg) -> np.ndarray:
    """Right-handed active rotation about z: ``[[c,-s,0],[s,c,0],[0,0,1]]``. Shape ``(..., 3, 3)``."""
    a = _as_rad(angle_deg)
    c, s = np.cos(a), np.sin(a)
    o, z = np.ones_like(a), np.zeros_like(a)
    return np.stack([np.stack([c, -s, z], -1), np.stack([s, c, z], -1), np.stack([z, z, o], -1)], -2)


def euler_zyz_to_matrix(rot_deg, tilt_deg, psi_deg) -> np.ndarray:
    """RELION's Euler matrix ``A = (Rz(rot)·Ry(tilt)·Rz(psi))ᵀ = Rz(-psi)·Ry(-tilt)·Rz(-rot)``.

    A displacement ``s`` in the particle box is ``A·s`` in the tomogram frame, i.e. the columns of ``A``
    are the box axes (``ParticleSet::getMatrix3x3``). Broadcasts over the inputs; returns float64
    ``(..., 3, 3)``.
    """
    return rotation_z(-np.asarray(psi_deg, float)) @ rotation_y(-np.asarray(tilt_deg, float)) @ rotation_z(
        -np.asarray(rot_deg, float)
    )


def matrix_to_euler_zyz(matrix) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Invert :func:`euler_zyz_to_matrix`: ``(rot_deg, tilt_deg, psi_deg)``, tilt in ``[0, 180]``.

    Follows RELION's ``Euler_matrix2angles`` branch choices, including gimbal lock (tilt 0 or 180,
    where rot is set to 0 and the whole in-plane angle goes to psi).
    """
    a = np.asarray(matrix, dtype=np.float64)
    flat = a.reshape(-1, 3, 3)
    out = np.empty((flat.shape[0], 3))
    eps = 16 * np.finfo(np.float32).eps
    for i, m in enumerate(flat):
        abs_sb = np.hypot(m[0, 2], m[1, 2])
        if abs_sb > eps:
            gamma = np.arctan2(m[1, 2], -m[0, 2])
            alpha = np.arctan2(m[2, 1], m[2, 0])
            if abs(np.sin(gamma)) < np.finfo(np.float32).eps:
                sign_sb = np.sign(-m[0, 2] / np.cos(gamma)) or 1.0
            else:
                sign_sb = (np.sign(m[1, 2]) or 1.0) if np.sin(gamma) > 0 else -(np.sign(m[1, 2]) or 1.0)
            beta = np.arctan2(sign_sb * abs_sb, m[2, 2])
        elif m[2, 2] > 0:
            alpha, beta, gamma = 0.0, 0.0, np.arctan2(-m[1, 0], m[0, 0])
        else:
            alpha, beta, gamma = 0.0, np.pi, np.arctan2(m[1, 0], -m[0, 0])
        out[i] = np.rad2deg([alpha, beta, gamma])
    out = out.reshape(a.shape[:-2] + (3,))
    return out[..., 0], out[..., 1], out[..., 2]


def tomogram_centre_px(tomo_size_px) -> np.ndarray:
    """Centre of the tomogram in decentred pixels: ``size / 2`` (float division), shape ``(3,)``.

    RELION uses this for particle positions and ``floor(size/2)`` for projection; we use this one for
    both (relion#1280, see the module docstring).
    """
    return np.asarray(tomo_size_px, dtype=np.float64) / 2.0


def image_centre_px(image_size_px) -> np.ndarray:
    """Centre of a tilt image ``(floor(W/2), floor(H/2))``, the pixel that is the window's phase origin."""
    w, h = image_size_px
    return np.array([w // 2, h // 2], dtype=np.float64)


def relion_angles_to_projection(
    x_tilt_deg, y_tilt_deg, z_rot_deg, x_shift_angst, y_shift_angst, pixel_size_angst, tomo_size_px, image_size_px
) -> np.ndarray:
    """Per-tilt 4×4 projection matrices from the RELION 5 per-tilt columns.

    ``P_f = T(shift/pix) · T(c_img) · Rz(ZRot) · Ry(YTilt) · Rx(XTilt) · T(-c_tomo)``, so a tomogram point
    ``p`` (decentred px, homogeneous) maps to ``(u, v, depth, 1)``; only ``u, v`` are image
    coordinates. ``c_tomo = size/2`` (see module docstring), ``c_img = floor(W/2), floor(H/2)``.

    Parameters
    ----------
    x_tilt_deg, y_tilt_deg, z_rot_deg, x_shift_angst, y_shift_angst
        Arrays of shape ``(n_tilts,)``.
    pixel_size_angst
        Tilt-series pixel size (Å/px).
    tomo_size_px
        ``(w0, h0, d0)`` from ``rlnTomoSizeX/Y/Z``.
    image_size_px
        ``(W, H)`` of the tilt images.

    Returns
    -------
    projections
        float64 ``(n_tilts, 4, 4)``.
    """
    rot = rotation_z(z_rot_deg) @ rotation_y(y_tilt_deg) @ rotation_x(x_tilt_deg)
    rot = rot.reshape(-1, 3, 3)
    n = rot.shape[0]
    c = tomogram_centre_px(tomo_size_px)
    t = np.zeros((n, 3))
    t[:, 0] = np.asarray(x_shift_angst, float) / pixel_size_angst
    t[:, 1] = np.asarray(y_shift_angst, float) / pixel_size_angst
    t[:, :2] += image_centre_px(image_size_px)
    proj = np.zeros((n, 4, 4))
    proj[:, :3, :3] = rot
    proj[:, :3, 3] = t - rot @ c
    proj[:, 3, 3] = 1.0
    return proj


def projection_to_relion_angles(projections, pixel_size_angst, tomo_size_px, image_size_px):
    """Invert :func:`relion_angles_to_projection` (RELION's ``getProjectionAnglesFromMatrix``).

    ZYX decomposition of the rotation block: ``YTilt = asin(-R20)``, ``XTilt = atan2(R21, R22)``,
    ``ZRot = atan2(R10, R00)``; at gimbal lock (``|R20| ≈ 1``) ``XTilt = 0`` and ``ZRot`` takes the whole
    in-plane angle. Shifts are the xy translation of ``P·T(c_tomo)`` minus ``c_img``, times the pixel size.

    Returns
    -------
    x_tilt_deg, y_tilt_deg, z_rot_deg, x_shift_angst, y_shift_angst
        Each float64 ``(n_tilts,)``.
    """
    p = np.asarray(projections, dtype=np.float64).reshape(-1, 4, 4)
    r = p[:, :3, :3]
    sy = np.clip(-r[:, 2, 0], -1.0, 1.0)
    y_tilt = np.arcsin(sy)
    locked = np.abs(sy) > 1 - 1e-12
    x_tilt = np.where(locked, 0.0, np.arctan2(r[:, 2, 1], r[:, 2, 2]))
    z_rot = np.where(locked, np.arctan2(-r[:, 0, 1], r[:, 1, 1]), np.arctan2(r[:, 1, 0], r[:, 0, 0]))
    c = tomogram_centre_px(tomo_size_px)
    t = p[:, :3, 3] + r @ c
    shift = (t[:, :2] - image_centre_px(image_size_px)) * pixel_size_angst
    return np.rad2deg(x_tilt), np.rad2deg(y_tilt), np.rad2deg(z_rot), shift[:, 0], shift[:, 1]
