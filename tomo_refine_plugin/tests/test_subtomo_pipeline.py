"""subtomo per-tilt chain: sign, CTF/dose weights, Zernike aberrations, 2D scaling (by hand)."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from tomo_refine_plugin.compute.ctf import ctf_rfft_2d
from tomo_refine_plugin.compute.dose import dose_weights_rfft_2d
from tomo_refine_plugin.compute.geometry import TiltSeriesOptics
from tomo_refine_plugin.compute.subtomo.pipeline import ExtractionSpec, tilt_spectra, weight_spectra
from tomo_refine_plugin.compute.zernike import zernike_odd_phase_rfft_2d

S2, PIX, F = 32, 5.0, 2


def _optics(**kw):
    base = dict(voltage_kv=300.0, cs_mm=2.7, amplitude_contrast=0.1, defocus_u_angst=[20000.0, 25000.0],
                defocus_v_angst=[19000.0, 24000.0], defocus_angle_deg=[10.0, 30.0],
                pre_exposure_e_per_angst2=[0.0, 30.0])
    base.update(kw)
    return TiltSeriesOptics(**base)


def _spectra(seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((1, F, S2, S2 // 2 + 1)) + 1j * rng.standard_normal((1, F, S2, S2 // 2 + 1))
            ).astype(np.complex64)


def test_data_are_minus_ctf_times_dose_and_weights_its_square():
    spec = ExtractionSpec(box_2d=S2, box_3d=S2, pixel_size_angst=PIX, circle_crop=False)
    optics = _optics()
    dose = dose_weights_rfft_2d(S2, PIX, optics.pre_exposure_e_per_angst2)
    x0 = _spectra()
    dz = np.array([[100.0, -200.0]])
    x, w = weight_spectra(x0.copy(), spec, optics, dz, dose)
    for f in range(F):
        c = ctf_rfft_2d(S2, PIX, 300.0, 2.7, 0.1, optics.defocus_u_angst[f] + dz[0, f],
                        optics.defocus_v_angst[f] + dz[0, f], optics.defocus_angle_deg[f]) * dose[f]
        np.testing.assert_allclose(x[0, f], -c * x0[0, f], rtol=2e-5, atol=1e-6)
        np.testing.assert_allclose(w[0, f], c * c, rtol=2e-5, atol=1e-7)
    xi, _ = weight_spectra(x0.copy(), replace(spec, flip_sign=1.0), optics, dz, dose)
    np.testing.assert_allclose(xi, -x, rtol=1e-6)
    xn, wn = weight_spectra(x0.copy(), replace(spec, do_ctf=False), optics, dz, dose)
    np.testing.assert_allclose(xn, -x0)
    assert (wn == 1).all()


def test_odd_zernike_multiplies_by_phase_and_even_enters_the_ctf():
    spec = ExtractionSpec(box_2d=S2, box_3d=S2, pixel_size_angst=PIX, circle_crop=False)
    coeff = [0.0, 300.0, 0.0, 50.0]
    plain = _optics()
    dose = dose_weights_rfft_2d(S2, PIX, plain.pre_exposure_e_per_angst2)
    x0 = _spectra(1)
    dz = np.zeros((1, F))
    xa, wa = weight_spectra(x0.copy(), spec, plain, dz, dose)
    xb, wb = weight_spectra(x0.copy(), spec, replace(plain, odd_zernike=np.array(coeff)), dz, dose)
    phi = zernike_odd_phase_rfft_2d(S2, PIX, coeff)
    assert np.abs(phi).max() > 0.5
    np.testing.assert_allclose(xb, xa * np.exp(-1j * phi), rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(wa, wb)  # odd aberrations do not change the weights
    even = np.array([0.0, 0.0, 0.0, 300.0])  # ρ is in 1/Å: ~3 rad at Nyquist
    xe, we = weight_spectra(x0.copy(), spec, replace(plain, even_zernike=even), dz, dose)
    c = ctf_rfft_2d(S2, PIX, 300.0, 2.7, 0.1, 20000.0, 19000.0, 10.0, even_zernike=even) * dose[0]
    np.testing.assert_allclose(we[0, 0], c * c, rtol=2e-5, atol=1e-7)
    assert np.abs(we - wa).max() > 0.1


def test_stack2d_images_are_divided_by_bin():
    optics = _optics()
    x0 = _spectra(2)
    dz = np.zeros((1, F))
    spec1 = ExtractionSpec(box_2d=S2, box_3d=S2, pixel_size_angst=PIX, circle_crop=False)
    spec2 = replace(spec1, binning=2.0, pixel_size_angst=PIX / 2)  # same binned pixel, same CTF
    dose = dose_weights_rfft_2d(S2, PIX, optics.pre_exposure_e_per_angst2)
    img1, none1 = weight_spectra(x0.copy(), spec1, optics, dz, dose, stack2d=True)
    img2, _ = weight_spectra(x0.copy(), spec2, optics, dz, dose, stack2d=True)
    assert none1 is None and img1.shape == (1, F, S2, S2) and img1.dtype == np.float32
    np.testing.assert_allclose(img2, img1 / 2, rtol=1e-5, atol=1e-6)


def test_subpixel_centring_moves_a_point_to_the_phase_origin():
    # a delta at (40.3, 21.7): after extraction the spectrum's phase is flat up to the sampling
    w, h = 64, 48
    yy, xx = np.mgrid[0:h, 0:w]
    u0, v0 = 40.25, 21.75
    stack = np.exp(-((xx - u0) ** 2 + (yy - v0) ** 2) / (2 * 1.5**2)).astype(np.float32)[None]
    spec = ExtractionSpec(box_2d=16, box_3d=16, pixel_size_angst=1.0)
    f = tilt_spectra(stack, np.array([[[u0, v0]]]), np.ones((1, 1), bool), spec)
    assert f.shape == (1, 1, 16, 9) and f.dtype == np.complex64
    low = np.abs(f[0, 0, :3, :3])
    np.testing.assert_allclose(np.angle(f[0, 0, :3, :3]), 0.0, atol=1e-3 * low.max() / low.min() + 1e-4)
    assert float(f[0, 0, 0, 0].real) == pytest.approx(stack.sum() / 16, rel=1e-3)


def test_cone_weights_by_hand():
    from tomo_refine_plugin.compute.subtomo.pipeline import cone_weights

    box = 16
    w = cone_weights(box, np.eye(3)[None], angle_deg=10.0, sig0=2.0)
    assert w.shape == (1, box, box, box // 2 + 1) and w.dtype == np.float32
    assert w[0, 5, 0, 0] == 0.0  # on the cone axis (kx = ky = 0)
    t = 3.0 / (0 * np.sin(np.deg2rad(5.0)) + 2.0)  # kx = 3 in the kz = 0 plane
    assert w[0, 0, 0, 3] == pytest.approx(1 - np.exp(-t * t / 2), rel=1e-6)
    t = 3.0 / (4 * np.sin(np.deg2rad(5.0)) + 2.0)  # kx = 3 at kz = −4
    assert w[0, box - 4, 0, 3] == pytest.approx(1 - np.exp(-t * t / 2), rel=1e-6)
    # the cone follows the particle frame: rotating z onto x moves the axis to kx
    rot = np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]])
    wr = cone_weights(box, rot[None], 10.0, 2.0)
    assert wr[0, 0, 0, 5] == 0.0 and wr[0, 5, 0, 0] > 0.9


@pytest.mark.parametrize("mode", [2, 1, 12, 0])
def test_streamed_windows_equal_the_in_memory_ones(tmp_path, mode):
    """Row-band streaming (what subtomo uses, to keep the tilt series out of memory) cuts the same
    edge-clamped windows as extraction from the loaded stack, for float32, int16, float16 and int8 (read
    whole) stacks, with windows hanging over every edge and invisible frames."""
    import mrcfile

    from tomo_refine_plugin.compute.fourier.extract import extract_windows
    from tomo_refine_plugin.compute.io.mrc import MrcSectionRows
    from tomo_refine_plugin.compute.subtomo.pipeline import stream_windows

    rng = np.random.default_rng(4)
    dtype = {2: np.float32, 1: np.int16, 12: np.float16, 0: np.int8}[mode]
    stack = (rng.standard_normal((5, 40, 56)) * (30 if mode == 0 else 100)).astype(dtype)
    path = tmp_path / "ts.mrcs"
    with mrcfile.new(path) as m:
        m.set_data(stack)
        assert m.header.mode == mode
    uv = rng.uniform(-15, 70, (6, 5, 2))
    visible = rng.random((6, 5)) > 0.25
    visible[:, 3] = False  # a frame no particle sees
    expected, origins = extract_windows(stack.astype(np.float32), uv, 16, visible)
    with MrcSectionRows(path) as rows:
        assert rows.shape == (5, 40, 56)
        got, got_origins = stream_windows(rows, uv, visible, 16)
        np.testing.assert_array_equal(rows.read_rows(2, 7, 9), stack[2, 7:9].astype(np.float32))
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(got_origins, origins)
    assert np.all(got[~visible] == 0)


@pytest.mark.parametrize("stack2d", [False, True])
def test_fused_ctf_weighting_is_bitwise_the_ctf_batch(stack2d):
    """The one-pass CTF·dose·sign kernel gives the same bits as evaluating ``ctf_rfft_2d_batch`` and
    multiplying (astigmatism, phase shift, CTF B-factor and scale, even Zernike, per-particle defocus)."""
    from tomo_refine_plugin.compute.ctf import ctf_rfft_2d_batch
    from tomo_refine_plugin.compute.subtomo.pipeline import _checkerboard_2d, _ctf_dose_weight

    optics = _optics(phase_shift_deg=[0.0, 20.0], ctf_bfactor_angst2=[0.0, 40.0], ctf_scale=[1.0, 0.9],
                     even_zernike=np.array([0.0, 0.0, 0.0, 0.0, 0.3, 0.0]))
    spec = ExtractionSpec(box_2d=S2, box_3d=S2, pixel_size_angst=PIX, binning=1.0)
    dose = dose_weights_rfft_2d(S2, PIX, optics.pre_exposure_e_per_angst2)
    dz = np.random.default_rng(1).normal(0.0, 500.0, (3, F))
    x0 = np.concatenate([_spectra(s) for s in range(3)])
    sign = np.ascontiguousarray(np.float32(-1.0) * _checkerboard_2d(S2))
    x = x0.copy()
    weights = np.empty((0, 0, 0, 0) if stack2d else x.shape, np.float32)
    _ctf_dose_weight(x, spec, optics, dz, dose, sign, weights)
    c = ctf_rfft_2d_batch(S2, PIX, optics, np.broadcast_to(np.arange(F), (3, F)), dz) * dose
    np.testing.assert_array_equal(x, x0 * (sign * c))
    if not stack2d:
        np.testing.assert_array_equal(weights, c * c)


@pytest.mark.parametrize("box_3d", [16, 12])
def test_fused_insert_assemble_is_bitwise_insert_then_assemble(box_3d):
    """The subtomo fast path (reused interleaved accumulator, no complex128 copies) writes the same bits
    as insert_3d + assemble_3d, with normfft = 1 and ≠ 1, and a dirty, larger reused buffer."""
    from tomo_refine_plugin.compute.subtomo.pipeline import assemble_3d, insert_3d, insert_assemble_3d

    rng = np.random.default_rng(7)
    n, s2 = 3, 16
    spec = ExtractionSpec(box_2d=s2, box_3d=box_3d, pixel_size_angst=PIX)
    data2d = (rng.standard_normal((n, F, s2, s2 // 2 + 1)) + 1j * rng.standard_normal((n, F, s2, s2 // 2 + 1))
              ).astype(np.complex64)
    w2d = rng.random((n, F, s2, s2 // 2 + 1)).astype(np.float32)
    tilt = np.deg2rad([-30.0, 20.0])
    frames = np.stack([[[np.cos(t), 0, np.sin(t)], [0, 1, 0], [-np.sin(t), 0, np.cos(t)]] for t in tilt])
    q, _ = np.linalg.qr(rng.standard_normal((n, 3, 3)))
    visible = np.array([[True, True], [True, False], [False, True]])
    dose = dose_weights_rfft_2d(s2, PIX, [0.0, 60.0])
    expected = assemble_3d(*insert_3d(data2d, w2d, frames, q, visible, dose, spec), spec)
    acc = np.full((n + 2, box_3d, box_3d, box_3d // 2 + 1, 4), 7.0)
    for buffer in (None, acc):
        got = insert_assemble_3d(data2d, w2d, frames, q, visible, dose, spec, acc=buffer)
        for g, e in zip(got, expected):
            assert g.dtype == e.dtype and g.shape == e.shape
            np.testing.assert_array_equal(g, e)


@pytest.mark.parametrize("stack2d", [False, True])
@pytest.mark.parametrize("do_ctf", [True, False])
def test_deferred_subpixel_phase_gives_the_same_bits(stack2d, do_ctf):
    """Applying the sub-pixel phase inside the CTF pass (defer_phase) changes no bit of the output."""
    rng = np.random.default_rng(3)
    stack = rng.standard_normal((F, 64, 64)).astype(np.float32)
    uv = rng.uniform(10.0, 54.0, (3, F, 2))
    visible = np.ones((3, F), bool)
    spec = ExtractionSpec(box_2d=S2, box_3d=24, pixel_size_angst=PIX, do_ctf=do_ctf)
    optics = _optics()
    dose = dose_weights_rfft_2d(S2, PIX, optics.pre_exposure_e_per_angst2)
    dz = rng.normal(0.0, 300.0, (3, F))
    direct = weight_spectra(tilt_spectra(stack, uv, visible, spec), spec, optics, dz, dose, stack2d=stack2d)
    spectra, phase = tilt_spectra(stack, uv, visible, spec, defer_phase=True)
    assert phase is not None
    deferred = weight_spectra(spectra, spec, optics, dz, dose, stack2d=stack2d, phase=phase)
    for a, b in zip(direct, deferred):
        if a is None:
            assert b is None
        else:
            np.testing.assert_array_equal(a, b)
