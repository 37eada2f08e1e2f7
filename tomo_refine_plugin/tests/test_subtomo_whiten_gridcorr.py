"""subtomo ``--whiten`` and ``--grid_precorr``: noise whitening recovers a flat spectrum, data and weights
scale as w and w², the gridding pre-correction by hand, and the plumbing through ``run_subtomo``."""
from __future__ import annotations

from dataclasses import replace

import mrcfile
import numpy as np
import pytest

from tomo_refine_plugin.compute.dose import dose_weights_rfft_2d
from tomo_refine_plugin.compute.geometry import TiltSeriesOptics
from tomo_refine_plugin.compute.io.particles import read_particle_set, write_particle_set
from tomo_refine_plugin.compute.subtomo import SubtomoOptions, run_subtomo
from tomo_refine_plugin.compute.subtomo import program as subtomo_program
from tomo_refine_plugin.compute.subtomo.pipeline import (
    ExtractionSpec,
    grid_precorrection_2d,
    noise_weights_rfft_2d,
    tilt_spectra,
    weight_spectra,
)

PIX = 5.0


def _optics(n_tilts):
    return TiltSeriesOptics(voltage_kv=300.0, cs_mm=2.7, amplitude_contrast=0.1,
                            defocus_u_angst=np.full(n_tilts, 20000.0), defocus_v_angst=np.full(n_tilts, 19000.0),
                            defocus_angle_deg=np.full(n_tilts, 10.0),
                            pre_exposure_e_per_angst2=np.arange(n_tilts) * 20.0)


def _coloured_noise(n_tilts, size, k0, seed=0):
    """Gaussian noise whose amplitude spectrum falls as 1/(1 + (f/k0)²) (f in cycles per px), a different
    level per tilt."""
    rng = np.random.default_rng(seed)
    white = rng.standard_normal((n_tilts, size, size))
    fy = np.fft.fftfreq(size)[:, None]
    fx = np.fft.rfftfreq(size)[None, :]
    g = 1.0 / (1.0 + (fy**2 + fx**2) / k0**2)
    out = np.fft.irfft2(np.fft.rfft2(white) * g, s=(size, size))
    return (out * (1.0 + np.arange(n_tilts))[:, None, None]).astype(np.float32)


def _shell_power(spectra, box):
    """Mean |X|² per integer shell 1 … box/2−1, over particles and the given axis-0 entries."""
    k = np.arange(box)
    ky = np.where(k < box / 2, k, k - box)
    r = np.round(np.hypot(ky[:, None], np.arange(box // 2 + 1)[None, :])).astype(int)
    p = (np.abs(spectra) ** 2).reshape(-1, box, box // 2 + 1).mean(0)
    return np.array([p[r == i].mean() for i in range(1, box // 2)])


def test_white_noise_gives_the_inverse_noise_sigma():
    # unitary FFT of white noise of variance σ²: power σ² in every shell, so w = 1/σ everywhere
    rng = np.random.default_rng(3)
    sigma = 2.5
    stack = (sigma * rng.standard_normal((2, 256, 256))).astype(np.float32)
    w = noise_weights_rfft_2d(stack, ExtractionSpec(box_2d=32, box_3d=32, pixel_size_angst=PIX))
    assert w.shape == (2, 32, 17) and w.dtype == np.float32
    np.testing.assert_allclose(w[:, 1:, :].mean(), 1.0 / sigma, rtol=0.02)
    assert np.abs(w / (1.0 / sigma) - 1.0).max() < 0.15


@pytest.mark.parametrize("binning", [1.0, 2.0])
def test_whitening_recovers_a_flat_spectrum_from_coloured_noise(binning):
    # noise whose power falls 25-fold across the binned band; after whitening, every shell of the
    # extracted windows must have the same power (within the estimate's scatter). With RELION's
    # lookup at bin·r the bin-2 spectrum would still fall several-fold.
    n_tilts, size = 2, 384
    stack = _coloured_noise(n_tilts, size, k0=0.06 / binning)
    s2 = 32
    spec = ExtractionSpec(box_2d=s2, box_3d=s2, binning=binning, pixel_size_angst=PIX, do_ctf=False,
                          circle_crop=False, flip_sign=1.0)
    w = noise_weights_rfft_2d(stack, spec)
    rng = np.random.default_rng(7)
    margin = spec.window_px
    uv = rng.uniform(margin, size - margin, (60, n_tilts, 2))
    vis = np.ones((60, n_tilts), bool)
    plain = _shell_power(tilt_spectra(stack, uv, vis, spec)[:, 0], s2)
    assert plain[0] / plain[-1] > 5.0
    spectra = tilt_spectra(stack, uv, vis, spec)
    data, weights = weight_spectra(spectra, spec, _optics(n_tilts), np.zeros((60, n_tilts)),
                                   np.ones((n_tilts, s2, s2 // 2 + 1), np.float32), noise_weights=w)
    for f in range(n_tilts):
        shells = _shell_power(data[:, f], s2)
        # flat at the level of the binned, mean-preserving windows: 1/bin² of the unbinned power
        np.testing.assert_allclose(shells, 1.0 / binning**2, rtol=0.25)
        np.testing.assert_allclose(weights[:, f], np.broadcast_to(w[f] ** 2, weights[:, f].shape), rtol=1e-6)


@pytest.mark.parametrize("do_ctf", [True, False])
def test_whitened_data_scale_by_w_and_weights_by_w_squared(do_ctf):
    s2, n_tilts = 32, 2
    spec = ExtractionSpec(box_2d=s2, box_3d=s2, pixel_size_angst=PIX, circle_crop=False, do_ctf=do_ctf)
    optics = _optics(n_tilts)
    dose = dose_weights_rfft_2d(s2, PIX, optics.pre_exposure_e_per_angst2)
    rng = np.random.default_rng(1)
    x0 = (rng.standard_normal((1, n_tilts, s2, 17)) + 1j * rng.standard_normal((1, n_tilts, s2, 17))
          ).astype(np.complex64)
    w = rng.uniform(0.5, 2.0, (n_tilts, s2, 17)).astype(np.float32)
    dz = np.array([[50.0, -80.0]])
    xp, wp = weight_spectra(x0.copy(), spec, optics, dz, dose)
    xw, ww = weight_spectra(x0.copy(), spec, optics, dz, dose, noise_weights=w)
    np.testing.assert_allclose(xw, xp * w[None], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(ww, wp * w[None] ** 2, rtol=1e-6, atol=1e-12)


def test_grid_precorrection_by_hand():
    s2, s3 = 48, 32
    g = grid_precorrection_2d(s2, s3)
    c = s2 // 2
    assert g.shape == (s2, s2) and g[c, c] == 1.0
    # r = s3/4 = 8: 1/sinc²(1/4) = (π/4)² / sin²(π/4) = π²/8
    np.testing.assert_allclose(g[c, c + 8], np.pi**2 / 8, rtol=1e-6)
    np.testing.assert_allclose(g[c - 8, c], np.pi**2 / 8, rtol=1e-6)
    # r = 1: no jump (RELION's r/sin(πr/R) gives 5.1 here): 1/sinc²(1/32) = 1.0032
    np.testing.assert_allclose(g[c, c + 1], ((np.pi / 32) / np.sin(np.pi / 32)) ** 2, rtol=1e-6)
    assert g[c, c + 1] < 1.01
    # zero from the crop radius s3/2 on; rising monotonically up to π²/4 inside
    assert g[c, c + 16] == 0.0 and g[0, 0] == 0.0
    row = g[c, c : c + 16]
    assert (np.diff(row) > 0).all() and row[-1] < np.pi**2 / 4


def test_grid_precorrection_multiplies_the_real_space_image():
    s2, s3 = 32, 24
    spec = ExtractionSpec(box_2d=s2, box_3d=s3, pixel_size_angst=PIX)
    optics = _optics(1)
    dose = dose_weights_rfft_2d(s2, PIX, optics.pre_exposure_e_per_angst2)
    rng = np.random.default_rng(2)
    x0 = (rng.standard_normal((1, 1, s2, 17)) + 1j * rng.standard_normal((1, 1, s2, 17))).astype(np.complex64)
    dz = np.zeros((1, 1))
    xp, wp = weight_spectra(x0.copy(), spec, optics, dz, dose)
    xg, wg = weight_spectra(x0.copy(), replace(spec, grid_precorr=True), optics, dz, dose)
    np.testing.assert_array_equal(wg, wp)

    def centred(x):
        return np.fft.fftshift(np.fft.irfft2(x[0, 0], s=(s2, s2), norm="ortho"))

    np.testing.assert_allclose(centred(xg), centred(xp) * grid_precorrection_2d(s2, s3), rtol=1e-4, atol=1e-6)


N_PARTICLES = 2


@pytest.fixture()
def subset(golden_dir, tmp_path, monkeypatch):
    dataset = golden_dir / "subtomo"
    monkeypatch.chdir(dataset)
    pset = read_particle_set(dataset / "particles.star")
    path = tmp_path / "particles.star"
    write_particle_set(pset.with_particles(pset.particles.iloc[:N_PARTICLES].copy()), path)
    return {"p": str(path), "t": "tomograms.star", "tmp": tmp_path}


def _opts(subset, name, **kw):
    return SubtomoOptions(o=str(subset["tmp"] / name) + "/", b=32, crop=24, p=subset["p"], t=subset["t"], j=2,
                          **kw)


def _read(path):
    with mrcfile.open(path, permissive=True) as m:
        return np.array(m.data, dtype=np.float64)


def test_whiten_run_scales_data_by_w_and_ctf2_by_w_squared(subset, monkeypatch):
    # a known, constant noise weight through the whole program: data ×3, CTF² ×9, multiplicity unchanged
    run_subtomo(_opts(subset, "plain"), log=lambda *_: None)

    def constant(stack, spec, workers=1):
        return np.full((stack.shape[0], spec.box_2d, spec.box_2d // 2 + 1), 3.0, np.float32)

    monkeypatch.setattr(subtomo_program, "noise_weights_rfft_2d", constant)
    run_subtomo(_opts(subset, "white", whiten=True), log=lambda *_: None)
    for k in range(1, N_PARTICLES + 1):
        d0 = _read(subset["tmp"] / f"plain/Subtomograms/TS_01/{k}_data.mrc")
        d1 = _read(subset["tmp"] / f"white/Subtomograms/TS_01/{k}_data.mrc")
        w0 = _read(subset["tmp"] / f"plain/Subtomograms/TS_01/{k}_weights.mrc")
        w1 = _read(subset["tmp"] / f"white/Subtomograms/TS_01/{k}_weights.mrc")
        np.testing.assert_allclose(d1, 3.0 * d0, rtol=1e-5, atol=1e-6 * np.abs(d0).max())
        np.testing.assert_allclose(w1[:24], 9.0 * w0[:24], rtol=1e-5, atol=1e-6 * w0[:24].max())
        np.testing.assert_array_equal(w1[24:], w0[24:])


def test_whiten_and_grid_precorr_run_on_the_golden_series(subset):
    plain = run_subtomo(_opts(subset, "plain"), log=lambda *_: None)
    res = run_subtomo(_opts(subset, "both", whiten=True, grid_precorr=True), log=lambda *_: None)
    assert res.n_written == plain.n_written == N_PARTICLES
    d0 = _read(subset["tmp"] / "plain/Subtomograms/TS_01/1_data.mrc")
    d1 = _read(subset["tmp"] / "both/Subtomograms/TS_01/1_data.mrc")
    w0 = _read(subset["tmp"] / "plain/Subtomograms/TS_01/1_weights.mrc")
    w1 = _read(subset["tmp"] / "both/Subtomograms/TS_01/1_weights.mrc")
    assert np.isfinite(d1).all() and np.isfinite(w1).all()
    assert not np.allclose(d1, d0)
    np.testing.assert_array_equal(w1[24:], w0[24:])
    # whitening lifts the high frequencies relative to DC in the CTF² weights
    assert w1[0, 0, 8] / w1[0, 0, 1] > w0[0, 0, 8] / w0[0, 0, 1]


def _point_amplitude(offset_px, rotations, s=32, precorr=None):
    """Reconstructed value at a point source ``offset_px`` voxels from the box centre, inserted from one
    projection per rotation (exact band-limited point spectra), relative to the same point at the centre."""
    from tomo_refine_plugin.compute.subtomo.pipeline import insert_assemble_3d

    n_frames = rotations.shape[0]
    spec = ExtractionSpec(box_2d=s, box_3d=s, cutoff_fract=-1.0)
    k = np.arange(s)
    ky = np.where(k < s / 2, k, k - s)[None, :, None]
    kx = np.arange(s // 2 + 1)[None, None, :]
    out = []
    for p in (np.zeros(3), np.asarray(offset_px, float)):
        u = np.einsum("fij,j->fi", rotations, p)[:, :2]
        amp = np.ones(n_frames) if precorr is None else precorr[s // 2 + np.round(u[:, 1]).astype(int),
                                                                 s // 2 + np.round(u[:, 0]).astype(int)]
        x = amp[:, None, None] * np.exp(-2j * np.pi * (kx * u[:, 0, None, None] + ky * u[:, 1, None, None]) / s) / s
        vol, _ = insert_assemble_3d(x[None].astype(np.complex64), np.ones((1,) + x.shape, np.float32), rotations,
                                    np.eye(3)[None], np.ones((1, n_frames), bool),
                                    np.ones((n_frames, s, s // 2 + 1), np.float32), spec)
        z, y, xx = (s // 2 + np.round(p[::-1])).astype(int)
        out.append(vol[0, z, y, xx])
    return out[1] / out[0]


def test_grid_precorrection_restores_off_centre_amplitude():
    # trilinear splatting attenuates a point at offset P by Π sinc²(P_i/s) (0.81 at s/4 along x, checked
    # here); the 2D pre-correction undoes the in-plane part: closer to 1, never overshooting (RELION's
    # intended (πr/R)/sin(πr/R) overshoots to ≈1.10)
    rng = np.random.default_rng(0)
    q = rng.standard_normal((150, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    a, b, c, d = q.T
    rot = np.stack([np.stack([a*a+b*b-c*c-d*d, 2*(b*c-a*d), 2*(b*d+a*c)], -1),
                    np.stack([2*(b*c+a*d), a*a-b*b+c*c-d*d, 2*(c*d-a*b)], -1),
                    np.stack([2*(b*d-a*c), 2*(c*d+a*b), a*a-b*b-c*c+d*d], -1)], 1)
    for offset in ((8.0, 0.0, 0.0), (6.0, 6.0, 0.0), (0.0, 0.0, 11.0)):
        plain = _point_amplitude(offset, rot)
        np.testing.assert_allclose(plain, np.prod(np.sinc(np.asarray(offset) / 32) ** 2), atol=0.01)
        corrected = _point_amplitude(offset, rot, precorr=grid_precorrection_2d(32, 32))
        assert plain + 0.08 < corrected < 1.0
