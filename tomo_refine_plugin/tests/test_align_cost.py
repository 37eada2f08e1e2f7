"""Alignment cost: layout round trip, finite-difference gradient, and the model's geometry."""
import numpy as np
import pytest

from tomo_refine_plugin.compute.align.ccmaps import spline_coefficients
from tomo_refine_plugin.compute.align.cost import AlignCost, apply_parameters
from tomo_refine_plugin.compute.align.layout import AlignLayout
from tomo_refine_plugin.compute.conventions import relion_angles_to_projection


@pytest.mark.parametrize("flags", [(True, True, True), (False, True, True), (True, False, False), (True, True, False)])
def test_layout_round_trip(flags):
    rng = np.random.default_rng(0)
    lay = AlignLayout(7, 5, *flags)
    a, s, o = rng.normal(size=(7, 3)), rng.normal(size=(7, 2)), rng.normal(size=(5, 3))
    x = lay.pack(a, s, o)
    assert x.shape == (lay.size,) == (7 * (3 * flags[0] + 2 * flags[1]) + 15 * flags[2],)
    a2, s2, o2 = lay.unpack(x)
    np.testing.assert_array_equal(a2, a if flags[0] else 0)
    np.testing.assert_array_equal(s2, s if flags[1] else 0)
    np.testing.assert_array_equal(o2, o if flags[2] else 0)
    np.testing.assert_array_equal(lay.pack(a2, s2, o2), x)


def _problem(range_reg=0.0, rng=None, oversampling=1):
    rng = np.random.default_rng(3) if rng is None else rng
    n_p, n_f, r = 6, 5, 6
    diam = (2 * r + 6) * oversampling
    tilt = np.linspace(-40, 40, n_f)
    proj = relion_angles_to_projection(rng.normal(0, 0.5, n_f), tilt, 85 + rng.normal(0, 1, n_f),
                                       rng.normal(0, 10, n_f), rng.normal(0, 10, n_f), 5.0, (400, 380, 120), (400, 400))
    pos = rng.uniform([50, 50, 20], [350, 330, 100], (n_p, 3))
    uv = np.einsum("fij,pj->pfi", proj[:, :2, :3], pos) + proj[None, :, :2, 3]
    # Smooth random maps (sum of Gaussians) so the cubic interpolant is smooth enough for FD.
    yy, xx = np.mgrid[0:diam, 0:diam]
    maps = np.zeros((n_p, n_f, diam, diam))
    for p in range(n_p):
        for f in range(n_f):
            for _ in range(3):
                c = rng.uniform(4, diam - 5, 2)
                maps[p, f] += rng.normal() * np.exp(-((xx - c[0]) ** 2 + (yy - c[1]) ** 2) / 8.0)
    maps[:, :, :3] = maps[:, :, -3:] = 0
    maps[:, :, :, :3] = maps[:, :, :, -3:] = 0
    visible = np.ones((n_p, n_f), bool)
    visible[0, 1] = False
    lay = AlignLayout(n_f, n_p)
    motion = rng.normal(0, 1.0, (n_p, n_f, 3))  # fixed input trajectories
    uv = uv + np.einsum("fij,pfj->pfi", proj[:, :2, :3], motion)
    cost = AlignCost(maps, uv, visible, proj, pos, np.array([200.0, 190.0, 60.0]), lay, r, range_reg=range_reg,
                     oversampling=oversampling, motion_px=motion)
    x = np.concatenate([rng.normal(0, 2.0, n_f * 5), rng.normal(0, 1.0, 3 * n_p)])
    return cost, x


@pytest.mark.parametrize("range_reg, oversampling", [(0.0, 1), (0.7, 1), (0.0, 2)])
def test_gradient_matches_finite_differences(range_reg, oversampling):
    cost, x = _problem(range_reg, oversampling=oversampling)
    if range_reg:
        cost.radius = 1.0  # make the range term active for many pairs
    value, grad = cost(x)
    assert np.any(cost.terms(x) != 0)
    h = 1e-5
    fd = np.array([(cost(x + h * e)[0] - cost(x - h * e)[0]) / (2 * h) for e in np.eye(x.size)])
    np.testing.assert_allclose(grad, fd, rtol=1e-5, atol=1e-6 * np.abs(fd).max())


def test_zero_parameters_reproduce_input_and_shift_moves_lookup():
    cost, _ = _problem()
    lay = cost.layout
    proj = np.concatenate([cost.model_rot, cost.model_trans[:, :, None]], 2)
    p = apply_parameters(np.concatenate([proj, np.tile([[[0, 0, 0, 1.0]]], (lay.n_tilts, 1, 1))], 1),
                         np.zeros((lay.n_tilts, 3)), np.zeros((lay.n_tilts, 2)), cost.pivot)
    np.testing.assert_allclose(p[:, :3, :3], cost.model_rot)
    # The maps hold B-spline coefficients of the CC samples: turn the test's maps into coefficients, so that the
    # lookup at integer displacements must give back the samples themselves.
    samples = cost.maps.copy()
    cost.maps = spline_coefficients(cost.maps)
    # Δ = 0 at x = 0: every visible term is −S at the map centre.
    r = int(cost.radius)
    t = cost.terms(np.zeros(lay.size))
    np.testing.assert_allclose(t[cost.visible], -samples[:, :, r + 3, r + 3][cost.visible], rtol=1e-5, atol=1e-6)
    # A shift of (+1, −2) px for tilt 2 reads the map at column r+4, row r+1.
    shifts = np.zeros((lay.n_tilts, 2))
    shifts[2] = (1.0, -2.0)
    t = cost.terms(lay.pack(np.zeros((lay.n_tilts, 3)), shifts, np.zeros((lay.n_particles, 3))))
    np.testing.assert_allclose(t[:, 2], -samples[:, 2, r + 1, r + 4], rtol=1e-5, atol=1e-6)


def _catmull_rom_value(samples, x, y):
    """The lookup RELION uses (bicubic Catmull-Rom on the samples), as a reference."""
    def w(t):
        return np.array([-0.5 * t**3 + t**2 - 0.5 * t, 1.5 * t**3 - 2.5 * t**2 + 1, -1.5 * t**3 + 2 * t**2 + 0.5 * t,
                         0.5 * t**3 - 0.5 * t**2])
    ix, iy = int(np.floor(x)), int(np.floor(y))
    return w(y - iy) @ samples[iy - 1:iy + 3, ix - 1:ix + 3] @ w(x - ix)


def test_spline_lookup_finds_a_sharp_band_limited_peak_far_better_than_catmull_rom():
    """A sharp band-limited peak (Gaussian spectrum, σ = 0.12 cycles/px) sampled at 1 px, as a whitened CC map is:
    the maximum of the cost's B-spline lookup lies within 0.03 px RMS of the truth over random sub-pixel phases,
    at most 0.4x the error of Catmull-Rom on the same samples (measured: 0.020 vs 0.071 px)."""
    from scipy.optimize import minimize

    r, n = 6, 19  # odd: no Nyquist term, so the samples define one band-limited function
    c = r + 3
    k = np.fft.fftfreq(n)
    envelope = np.exp(-(k[:, None] ** 2 + k[None, :] ** 2) / (2 * 0.12 ** 2))
    lay = AlignLayout(1, 1, False, True, False)
    rng = np.random.default_rng(0)
    err_spline, err_cr = [], []
    for true in rng.uniform(-0.5, 0.5, (12, 2)):
        phase = np.exp(-2j * np.pi * (k[None, :] * (true[0] + c) + k[:, None] * (true[1] + c)))
        samples = np.real(np.fft.ifft2(envelope * phase))
        maps = spline_coefficients(samples[None, None].astype(np.float32))
        cost = AlignCost(maps, np.zeros((1, 1, 2)), np.ones((1, 1), bool), np.eye(4)[None], np.zeros((1, 3)),
                         np.zeros(3), lay, r)
        res = minimize(lambda d: cost(lay.pack(np.zeros((1, 3)), d[None], np.zeros((1, 3)))), np.zeros(2), jac=True,
                       method="L-BFGS-B", options={"ftol": 1e-15, "gtol": 1e-12})
        err_spline.append(np.hypot(*(res.x - true)))
        ref = minimize(lambda d: -_catmull_rom_value(samples, d[0] + c, d[1] + c), np.zeros(2), method="Nelder-Mead",
                       options={"xatol": 1e-9, "fatol": 1e-15})
        err_cr.append(np.hypot(*(ref.x - true)))
    rms_spline, rms_cr = np.sqrt(np.mean(np.square(err_spline))), np.sqrt(np.mean(np.square(err_cr)))
    assert rms_spline < 0.03 and rms_spline < 0.4 * rms_cr, (rms_spline, rms_cr)
