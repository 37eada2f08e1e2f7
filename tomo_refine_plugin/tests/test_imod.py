"""Scipion/IMOD 2D tilt-image transforms ↔ RELION 5 angles and shifts, and coordinate frames."""
import numpy as np
import pytest

from tomo_refine_plugin.compute.conventions import relion_angles_to_projection
from tomo_refine_plugin.compute.errors import InputError
from tomo_refine_plugin.compute.geometry import particle_positions_px, project_points
from tomo_refine_plugin.compute.imod import (
    centred_angst_to_scipion,
    imod_centre_px,
    imod_to_relion,
    project_imod,
    relion_to_imod,
    scipion_to_centred_angst,
)


def _rot2(deg):
    a = np.deg2rad(deg)
    return np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])


def _xf(angle_deg, shift_px):
    m = np.eye(3)
    m[:2, :2] = _rot2(angle_deg)
    m[:2, 2] = shift_px
    return m


def test_hand_derived_tilt_axis_90():
    """IMOD rotates a 90° tilt axis to vertical with A = Rz(−90°) = [[0,1],[−1,0]]; s = (10, 0) px.

    ZRot = atan2(A01, A00) = 90°. t = −A⁻¹·s = −[[0,−1],[1,0]]·(10,0) = (0, −10) px = (0, −20) Å at 2 Å/px.
    A centred point (5, 0, 0) px at tilt 0 in a 64×64 image: raw = 32 + A⁻¹·((5,0) − (10,0)) = (32, 27).
    """
    m = _xf(-90.0, [10.0, 0.0])
    xt, yt, zr, sx, sy = imod_to_relion(m[None], [0.0], 2.0, (64, 64))
    assert xt[0] == 0.0 and yt[0] == 0.0
    assert zr[0] == pytest.approx(90.0)
    assert (sx[0], sy[0]) == pytest.approx((0.0, -20.0), abs=1e-12)
    uv = project_imod([[5.0, 0.0, 0.0]], [0.0], m[None], (64, 64))
    assert uv[0, 0] == pytest.approx([32.0, 27.0])
    proj = relion_angles_to_projection(xt, yt, zr, sx, sy, 2.0, (64, 64, 32), (64, 64))
    assert project_points(proj, [[5.0 + 32, 32.0, 16.0]])[0, 0] == pytest.approx([32.0, 27.0])


def test_hand_derived_tilt_only():
    """No rotation, shift s = (3, −4) px, tilt 30°: a point (10, 7, 4) px projects to
    aligned (10·cos30 + 4·sin30, 7) = (10.660254, 7) → raw = c + aligned − s = (31 + 7.660254, 31 + 11)
    for an odd 63×63 image (c = 31 in both conventions)."""
    m = _xf(0.0, [3.0, -4.0])
    uv = project_imod([[10.0, 7.0, 4.0]], [30.0], m[None], (63, 63))
    assert uv[0, 0] == pytest.approx([31 + 10 * np.cos(np.pi / 6) + 2.0 - 3.0, 31 + 11.0])
    _, _, zr, sx, sy = imod_to_relion(m[None], [30.0], 1.5, (63, 63))
    assert zr[0] == pytest.approx(0.0) and (sx[0], sy[0]) == pytest.approx((-4.5, 6.0))


@pytest.mark.parametrize("image_size", [(64, 48), (63, 47), (64, 47)])
@pytest.mark.parametrize("tomo_size", [(64, 48, 20), (63, 47, 21)])
@pytest.mark.parametrize("centre", ["relion", "imod"])
def test_projections_agree_between_descriptions(image_size, tomo_size, centre):
    """The Scipion/IMOD description and the RELION one put every particle on the same image pixel,
    for odd and even image and tomogram sizes, a realistic 85° tilt axis and random shifts."""
    rng = np.random.default_rng(1)
    n_tilts = 11
    tilts = np.linspace(-60, 60, n_tilts)
    axis = 85.0 + rng.normal(0, 0.5, n_tilts)
    transforms = np.stack([_xf(-a, rng.normal(0, 5, 2)) for a in axis])
    pix = 2.7
    xt, yt, zr, sx, sy = imod_to_relion(transforms, tilts, pix, image_size, centre=centre)
    assert zr == pytest.approx(axis)
    centred_px = rng.uniform(-10, 10, (7, 3))
    uv_imod = project_imod(centred_px, tilts, transforms, image_size, centre=centre)
    proj = relion_angles_to_projection(xt, yt, zr, sx, sy, pix, tomo_size, image_size)
    positions = particle_positions_px(centred_px * pix, pix, tomo_size)
    uv_relion = project_points(proj, positions)
    assert uv_relion.shape == (7, n_tilts, 2)
    np.testing.assert_allclose(uv_relion, uv_imod, atol=1e-9)


@pytest.mark.parametrize("centre", ["relion", "imod"])
def test_round_trip(centre):
    rng = np.random.default_rng(2)
    transforms = np.stack([_xf(a, rng.normal(0, 8, 2)) for a in rng.uniform(-179, 179, 9)])
    xt, yt, zr, sx, sy = imod_to_relion(transforms, np.zeros(9), 1.3, (65, 64), centre=centre)
    back = relion_to_imod(zr, sx, sy, 1.3, (65, 64), centre=centre)
    assert back.shape == (9, 3, 3)
    np.testing.assert_allclose(back, transforms, atol=1e-12)
    again = imod_to_relion(back, np.zeros(9), 1.3, (65, 64), centre=centre)
    np.testing.assert_allclose(np.stack(again), np.stack([xt, yt, zr, sx, sy]), atol=1e-10)


def test_centre_conventions_differ_by_half_pixel_on_even_axes():
    assert imod_centre_px((64, 63)) == pytest.approx([31.5, 31.0])
    m = _xf(0.0, [0.0, 0.0])[None]
    _, _, _, sx, sy = imod_to_relion(m, [0.0], 1.0, (64, 63), centre="imod")
    assert (sx[0], sy[0]) == pytest.approx((-0.5, 0.0))


def test_closest_rotation_for_small_magnification_and_refusal_of_stretch():
    m = _xf(-80.0, [2.0, 1.0])
    m[:2, :2] *= 1.01
    _, _, zr, _, _ = imod_to_relion(m[None], [0.0], 1.0, (64, 64))
    assert zr[0] == pytest.approx(80.0)
    m[:2, :2] = np.diag([1.3, 0.8])
    with pytest.raises(InputError, match="not a rotation"):
        imod_to_relion(m[None], [0.0], 1.0, (64, 64))
    mirror = np.diag([1.0, -1.0, 1.0])
    with pytest.raises(InputError, match="determinant"):
        imod_to_relion(mirror[None], [0.0], 1.0, (64, 64))


def test_scipion_coordinates_hand_derived():
    """A 64×64×31 tomogram at 4 Å/px, default origin −dim/2·pix: a stored (0,0,0) is the float centre
    (32, 32, 15.5) from the corner, i.e. rlnCenteredCoordinate = 0; stored (1, −2, 0.5) → (4, −8, 2) Å."""
    c = scipion_to_centred_angst([[0, 0, 0], [1, -2, 0.5]], 4.0, (64, 64, 31))
    np.testing.assert_allclose(c, [[0, 0, 0], [4, -8, 2]])
    # A non-default origin at the corner (0,0,0): stored = bottom-left position.
    c = scipion_to_centred_angst([[32, 32, 15.5]], 4.0, (64, 64, 31), origin_shifts_angst=(0, 0, 0))
    np.testing.assert_allclose(c, [[0, 0, 0]])


def test_scipion_coordinates_round_trip():
    rng = np.random.default_rng(3)
    p = rng.uniform(-30, 30, (5, 3))
    for origin in (None, (-100.0, -50.0, 7.0)):
        c = scipion_to_centred_angst(p, 3.1, (63, 64, 21), origin)
        np.testing.assert_allclose(centred_angst_to_scipion(c, 3.1, (63, 64, 21), origin), p, atol=1e-12)
