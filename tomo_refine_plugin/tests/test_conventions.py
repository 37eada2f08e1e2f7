"""RELION conventions (conventions.py) and the geometry dataclasses (geometry.py), with hand-derived numbers."""
from __future__ import annotations

import numpy as np
import pytest

from tomo_refine_plugin.compute.conventions import (
    euler_zyz_to_matrix,
    image_centre_px,
    matrix_to_euler_zyz,
    projection_to_relion_angles,
    relion_angles_to_projection,
    rotation_x,
    rotation_y,
    rotation_z,
    tomogram_centre_px,
)
from tomo_refine_plugin.compute.geometry import (
    TiltSeriesGeometry,
    TiltSeriesOptics,
    centred_angst_from_positions_px,
    depth_offsets_px,
    particle_positions_px,
    project_points,
    visible_in_frames,
)

X, Y, Z = np.eye(3)


def test_rotations_are_active_right_handed():
    """Rz(90) takes x to y, Ry(90) takes z to x, Rx(90) takes y to z."""
    np.testing.assert_allclose(rotation_z(90.0) @ X, Y, atol=1e-15)
    np.testing.assert_allclose(rotation_y(90.0) @ Z, X, atol=1e-15)
    np.testing.assert_allclose(rotation_x(90.0) @ Y, Z, atol=1e-15)
    assert rotation_z(np.zeros(4)).shape == (4, 3, 3)


def test_euler_matrix_is_transposed_zyz():
    """A = (Rz(rot)·Ry(tilt)·Rz(psi))ᵀ. Hand: A(0, 90, 0) = Ry(−90) takes the box x axis to tomogram +z;
    A(90, 0, 0) = Rz(−90) takes x to −y."""
    np.testing.assert_allclose(euler_zyz_to_matrix(0.0, 90.0, 0.0) @ X, Z, atol=1e-15)
    np.testing.assert_allclose(euler_zyz_to_matrix(90.0, 0.0, 0.0) @ X, -Y, atol=1e-15)
    rot, tilt, psi = 30.0, 50.0, -70.0
    np.testing.assert_allclose(
        euler_zyz_to_matrix(rot, tilt, psi), (rotation_z(rot) @ rotation_y(tilt) @ rotation_z(psi)).T, atol=1e-15
    )


def test_euler_round_trip_and_gimbal_lock():
    rng = np.random.default_rng(3)
    rot = rng.uniform(-180, 180, 20)
    tilt = rng.uniform(1, 179, 20)
    psi = rng.uniform(-180, 180, 20)
    r2, t2, p2 = matrix_to_euler_zyz(euler_zyz_to_matrix(rot, tilt, psi))
    np.testing.assert_allclose(t2, tilt, atol=1e-9)
    np.testing.assert_allclose(euler_zyz_to_matrix(r2, t2, p2), euler_zyz_to_matrix(rot, tilt, psi), atol=1e-12)
    np.testing.assert_allclose(np.cos(np.deg2rad(r2 - rot)), 1.0, atol=1e-12)
    # tilt 0: the in-plane angle rot + psi all goes to psi, rot = 0
    r, t, p = matrix_to_euler_zyz(euler_zyz_to_matrix(30.0, 0.0, 20.0))
    assert (float(r), float(t)) == pytest.approx((0.0, 0.0), abs=1e-9)
    assert float(p) == pytest.approx(50.0, abs=1e-9)


def test_centres():
    """Tomogram centre is size/2 as float (relion#1280 fix); image centre floor(size/2)."""
    np.testing.assert_array_equal(tomogram_centre_px((255, 256, 101)), [127.5, 128.0, 50.5])
    np.testing.assert_array_equal(image_centre_px((255, 256)), [127.0, 128.0])


def _project(x_tilt, y_tilt, z_rot, shift=(0.0, 0.0), tomo=(200, 100, 60), image=(160, 120), pix=2.0):
    return relion_angles_to_projection(
        np.atleast_1d(x_tilt), np.atleast_1d(y_tilt), np.atleast_1d(z_rot),
        np.atleast_1d(shift[0]), np.atleast_1d(shift[1]), pix, tomo, image,
    )


def test_projection_at_zero_tilt_with_shift():
    """Angles 0: the centre (100, 50, 30) goes to the image centre (80, 60) plus shift/pix = (12, −4) Å / 2 =
    (6, −2) px; a point (+3, +1, +5) px off the centre lands (+3, +1) px off with depth 5."""
    p = _project(0.0, 0.0, 0.0, shift=(12.0, -4.0))
    assert p.shape == (1, 4, 4)
    q = p[0] @ np.array([103.0, 51.0, 35.0, 1.0])
    np.testing.assert_allclose(q, [80 + 6 + 3, 60 - 2 + 1, 5.0, 1.0], atol=1e-12)


def test_projection_rotation_order_is_zyx():
    """R = Rz(ZRot)·Ry(YTilt)·Rx(XTilt). With XTilt = 90, ZRot = 90: +x → Rx: x → Rz(90): y, so v += 1;
    +y → Rx(90): z → Rz: z, so depth += 1. With YTilt = 90 alone: +z → x (u += 1), +x → −z (depth −1)."""
    c = np.array([100.0, 50.0, 30.0, 1.0])
    p = _project(90.0, 0.0, 90.0)[0]
    np.testing.assert_allclose(p @ (c + [1, 0, 0, 0]) - p @ c, [0, 1, 0, 0], atol=1e-12)
    np.testing.assert_allclose(p @ (c + [0, 1, 0, 0]) - p @ c, [0, 0, 1, 0], atol=1e-12)
    p = _project(0.0, 90.0, 0.0)[0]
    np.testing.assert_allclose(p @ (c + [0, 0, 1, 0]) - p @ c, [1, 0, 0, 0], atol=1e-12)
    np.testing.assert_allclose(p @ (c + [1, 0, 0, 0]) - p @ c, [0, 0, -1, 0], atol=1e-12)


@pytest.mark.parametrize("tomo", [(200, 100, 60), (201, 99, 61)])
def test_projection_angles_round_trip(tomo):
    """Decomposing the matrices gives back the angles and shifts, even and odd tomogram sizes."""
    rng = np.random.default_rng(7)
    n = 9
    xt, yt, zr = rng.uniform(-5, 5, n), np.linspace(-60, 60, n), rng.uniform(80, 95, n)
    sx, sy = rng.uniform(-50, 50, n), rng.uniform(-50, 50, n)
    p = relion_angles_to_projection(xt, yt, zr, sx, sy, 2.5, tomo, (161, 120))
    back = projection_to_relion_angles(p, 2.5, tomo, (161, 120))
    for got, want in zip(back, (xt, yt, zr, sx, sy)):
        np.testing.assert_allclose(got, want, atol=1e-9)


def test_odd_size_centre_projects_to_image_centre():
    """Deliberate relion#1280 fix: the centred origin X = 0 sits at size/2 and projects, at every tilt,
    exactly to the image centre plus shift — also for odd sizes (RELION is off by ½ px per odd axis)."""
    tomo = (255, 255, 101)
    pos = particle_positions_px(np.zeros((1, 3)), 3.0, tomo)
    np.testing.assert_array_equal(pos, [[127.5, 127.5, 50.5]])
    p = relion_angles_to_projection([1.0, -2.0], [-30.0, 45.0], [85.0, 86.0], [6.0, 0.0], [0.0, -3.0], 3.0, tomo,
                                    (200, 180))
    uv = project_points(p, pos)
    np.testing.assert_allclose(uv[0], [[102.0, 90.0], [100.0, 89.0]], atol=1e-12)


def test_particle_positions_with_origin_and_subtomo_matrix():
    """p = X/pix + size/2 − A_sub·o/pix. A_sub = Rz(90) rotates origin (2, 0, 0) Å = (1, 0, 0) px to (0, 1, 0)."""
    a = rotation_z(90.0)[None]
    p = particle_positions_px([[4.0, -2.0, 0.0]], 2.0, (100, 80, 40), [[2.0, 0.0, 0.0]], a)
    np.testing.assert_allclose(p, [[50 + 2, 40 - 1 - 1, 20]], atol=1e-12)
    # no matrix: plain subtraction
    p = particle_positions_px([[4.0, -2.0, 0.0]], 2.0, (100, 80, 40), [[2.0, 0.0, 0.0]])
    np.testing.assert_allclose(p, [[52 - 1, 39, 20]], atol=1e-12)
    np.testing.assert_allclose(centred_angst_from_positions_px([[52.0, 39.0, 20.0]], 2.0, (100, 80, 40)),
                               [[4.0, -2.0, 0.0]])


def test_project_points_static_and_per_frame():
    p = _project([0.0, 0.0], [0.0, 30.0], [0.0, 0.0])
    pts = np.array([[100.0, 50.0, 30.0], [110.0, 40.0, 35.0]])
    uv = project_points(p, pts)
    assert uv.shape == (2, 2, 2)
    np.testing.assert_allclose(project_points(p, np.repeat(pts[:, None], 2, axis=1)), uv)
    # tilt 30 about y, point +10 px in x and +5 in z: u = 80 + 10·cos30 + 5·sin30
    assert uv[1, 1, 0] == pytest.approx(80 + 10 * np.cos(np.pi / 6) + 5 * 0.5)


def test_depth_offsets_by_hand():
    """[R(p − c)]_z = −sin(YT)·X + cos(YT)sin(XT)·Y + cos(YT)cos(XT)·Z; YT = 30, p − c = (10, 0, 4): −5 + 4·cos30."""
    p = _project([0.0], [30.0], [80.0])
    d = depth_offsets_px(p, [[110.0, 50.0, 34.0]], [100.0, 50.0, 30.0])
    assert d.shape == (1, 1)
    assert d[0, 0] == pytest.approx(-5.0 + 4.0 * np.cos(np.pi / 6))


def test_visibility_is_strict():
    """RELION: r < u < W − r and r < v < H − r (a box touching the edge is not visible)."""
    uv = np.array([[[10.0, 50.0], [10.001, 50.0], [90.0, 50.0], [50.0, 89.999]]])
    np.testing.assert_array_equal(visible_in_frames(uv, (100, 100), 10.0), [[False, True, False, True]])


def _geometry(**kw):
    args = dict(name="t", tomo_size_px=(100, 100, 50), image_size_px=(120, 110), pixel_size_angst=2.0,
                x_tilt_deg=[0.0, 1.0], y_tilt_deg=[-3.0, 3.0], z_rot_deg=[85.0, 85.0], shift_angst=[[1, 2], [3, 4]])
    args.update(kw)
    return TiltSeriesGeometry(**args)


def test_geometry_dataclass_validates_and_freezes():
    g = _geometry()
    assert g.n_tilts == 2 and g.hand == -1.0 and g.defocus_slope == 1.0
    np.testing.assert_array_equal(g.centre_px, [50.0, 50.0, 25.0])
    with pytest.raises(ValueError):
        g.y_tilt_deg[0] = 5.0
    with pytest.raises(ValueError):
        _geometry(z_rot_deg=[85.0])
    with pytest.raises(ValueError):
        _geometry(pixel_size_angst=0.0)
    p = g.projection_matrices()
    g2 = g.with_projection_matrices(p)
    np.testing.assert_allclose(g2.projection_matrices(), p, atol=1e-12)
    np.testing.assert_allclose(g2.shift_angst, g.shift_angst, atol=1e-9)


def test_optics_defaults_and_frame_sequence():
    """Dose-symmetric order: pre-exposures (6, 0, 3, 3) → chronological tilts (1, 2, 3, 0), stable for ties."""
    o = TiltSeriesOptics(300.0, 2.7, 0.07, [1e4] * 4, [1e4] * 4, [0.0] * 4, [6.0, 0.0, 3.0, 3.0])
    np.testing.assert_array_equal(o.ctf_scale, 1.0)
    np.testing.assert_array_equal(o.ctf_bfactor_angst2, 0.0)
    np.testing.assert_array_equal(o.phase_shift_deg, 0.0)
    np.testing.assert_array_equal(o.frame_sequence(), [1, 2, 3, 0])
    assert o.n_tilts == 4 and o.even_zernike.size == 0
    with pytest.raises(ValueError):
        TiltSeriesOptics(300.0, 2.7, 1.0, [1e4], [1e4], [0.0], [0.0])
