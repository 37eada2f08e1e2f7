"""RELION CTF conventions, checked against numbers derived by hand (see each docstring)."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from tomo_refine_plugin.compute.ctf import (
    ctf_rfft_2d,
    ctf_rfft_2d_batch,
    defocus_offsets_angst,
    electron_wavelength_angst,
)
from tomo_refine_plugin.compute.fourier import rfft_frequencies_2d
from tomo_refine_plugin.compute.geometry import TiltSeriesGeometry, TiltSeriesOptics

LAMBDA_300 = 0.0196876153  # 12.2643247/sqrt(3e5·(1 + 0.978466e-6·3e5)) = 12.2643247/sqrt(388061.94)


def _ctf(**kw):
    args = dict(
        box_px=64, pixel_size_angst=2.0, voltage_kv=300.0, cs_mm=0.0, amplitude_contrast=0.1,
        defocus_u_angst=10000.0, defocus_v_angst=10000.0, defocus_angle_deg=0.0,
    )
    args.update(kw)
    return ctf_rfft_2d(**args)


def test_wavelength_relativistic():
    """300 kV → 0.019688 Å (non-relativistic would be 0.02239 Å); 200 kV → 0.025079 Å."""
    assert electron_wavelength_angst(300) == pytest.approx(LAMBDA_300, rel=1e-8)
    assert electron_wavelength_angst(200) == pytest.approx(0.0250794936, rel=1e-8)


def test_shape_dtype_and_dc_is_plus_q0():
    """At k = 0: γ = −K3, CTF = −sin(−atan(Q0/√(1−Q0²))) = +Q0 (RELION's positive first lobe)."""
    c = _ctf()
    assert c.shape == (64, 33) and c.dtype == np.float32
    assert c[0, 0] == pytest.approx(0.1, abs=1e-7)
    # 90° phase plate: CTF(0) = sin(π/2 + K3) = cos(K3) = √(1 − Q0²)
    assert _ctf(phase_shift_deg=90.0)[0, 0] == pytest.approx(np.sqrt(0.99), abs=1e-7)


def test_defocus_value_by_hand():
    """Box 64, 2 Å/px, x = 8 → k = 8/128 = 0.0625 Å⁻¹, Δf = 10000 Å, Cs = 0, Q0 = 0.1.

    πλΔf k² = π·0.0196876·10000·0.00390625 = 2.416034; K3 = atan(0.1/√0.99) = 0.100167;
    CTF = −sin(−2.416034 − 0.100167) = sin(2.516201) = 0.585415.
    """
    c = _ctf()
    assert c[0, 8] == pytest.approx(0.585415, abs=2e-6)
    # same |k| on the ky axis, positive and negative rows (isotropic)
    assert c[8, 0] == pytest.approx(0.585415, abs=2e-6)
    assert c[64 - 8, 0] == pytest.approx(0.585415, abs=2e-6)


def test_spherical_aberration_by_hand():
    """Δf = 0, Q0 = 0, Cs = 2.7 mm, k = 0.25 Å⁻¹ (Nyquist at 2 Å, x = 32).

    K2 = (π/2)·2.7e7·λ³ = 323.6406 Å²; γ = K2·k⁴ = 1.264221; CTF = −sin(1.264221) = −0.953373.
    """
    c = _ctf(cs_mm=2.7, amplitude_contrast=0.0, defocus_u_angst=0.0, defocus_v_angst=0.0)
    assert c[0, 32] == pytest.approx(-0.953373, abs=2e-6)


def test_bfactor_and_scale():
    """exp(−B k²/4) with B = 100 Å², k = 0.0625: exp(−0.09765625) = 0.906961; scale multiplies."""
    ref = _ctf()
    c = _ctf(bfactor_angst2=100.0, scale=0.5)
    assert c[0, 8] / ref[0, 8] == pytest.approx(0.5 * 0.906961, rel=1e-5)


def test_clamp_to_plus_1e8():
    """Q0 = 0, Δf = 0, Cs = 0 → γ = 0 → CTF = 0, replaced by +1e-8 (SGN(0) = +1)."""
    c = _ctf(amplitude_contrast=0.0, defocus_u_angst=0.0, defocus_v_angst=0.0)
    assert np.all(c == np.float32(1e-8))


def test_astigmatism_axis():
    """ΔfU acts along u = (cos α, sin α): at angle 0 the kx axis sees ΔfU and the ky axis ΔfV; at 90° swapped."""
    iso_u = _ctf(defocus_u_angst=20000.0, defocus_v_angst=20000.0)
    iso_v = _ctf(defocus_u_angst=10000.0, defocus_v_angst=10000.0)
    a0 = _ctf(defocus_u_angst=20000.0, defocus_v_angst=10000.0, defocus_angle_deg=0.0)
    a90 = _ctf(defocus_u_angst=20000.0, defocus_v_angst=10000.0, defocus_angle_deg=90.0)
    np.testing.assert_allclose(a0[0, 1:], iso_u[0, 1:], atol=1e-6)
    np.testing.assert_allclose(a0[1:32, 0], iso_v[1:32, 0], atol=1e-6)
    np.testing.assert_allclose(a90[0, 1:], iso_v[0, 1:], atol=1e-6)
    np.testing.assert_allclose(a90[1:32, 0], iso_u[1:32, 0], atol=1e-6)


def test_astigmatism_effective_defocus_at_oblique_point():
    """At grid point (kx, ky) = (5, 3)/128 Å⁻¹ with α = 30°: Δf(θ) = ΔfU cos²(θ−α) + ΔfV sin²(θ−α), θ = atan2(3, 5)."""
    theta = np.arctan2(3, 5)
    a = np.deg2rad(30.0)
    df = 20000.0 * np.cos(theta - a) ** 2 + 10000.0 * np.sin(theta - a) ** 2
    astig = _ctf(defocus_u_angst=20000.0, defocus_v_angst=10000.0, defocus_angle_deg=30.0)
    iso = _ctf(defocus_u_angst=df, defocus_v_angst=df)
    assert astig[3, 5] == pytest.approx(iso[3, 5], abs=1e-6)


def test_rows_are_signed_ky():
    """Row box−3 is ky = −3: mirroring ky is the same as negating the astigmatism angle."""
    p = _ctf(defocus_u_angst=20000.0, defocus_v_angst=10000.0, defocus_angle_deg=30.0)
    m = _ctf(defocus_u_angst=20000.0, defocus_v_angst=10000.0, defocus_angle_deg=-30.0)
    assert p[64 - 3, 5] == pytest.approx(m[3, 5], abs=1e-7)
    assert abs(p[64 - 3, 5] - p[3, 5]) > 1e-3


def test_even_zernike_z00_is_a_phase_shift():
    """Z_0^0 = 1, added to γ: coefficient c equals phase shift −c (γ = … − K5 + c)."""
    c = 0.3
    z = _ctf(even_zernike=[c])
    p = _ctf(phase_shift_deg=-np.rad2deg(c))
    np.testing.assert_allclose(z, p, atol=1e-6)


def _optics(n=3):
    return TiltSeriesOptics(
        voltage_kv=300.0, cs_mm=2.7, amplitude_contrast=0.07,
        defocus_u_angst=np.array([20000.0, 25000.0, 30000.0])[:n], defocus_v_angst=np.array([19000.0, 24000.0, 29500.0])[:n],
        defocus_angle_deg=np.array([10.0, 40.0, -20.0])[:n], pre_exposure_e_per_angst2=np.arange(n) * 3.0,
        ctf_scale=np.array([1.0, 0.9, 0.8])[:n], ctf_bfactor_angst2=np.array([0.0, 10.0, 20.0])[:n],
        phase_shift_deg=np.array([0.0, 5.0, 0.0])[:n],
    )


def test_batch_matches_single_with_extra_defocus():
    opt = _optics()
    tilts = np.array([[0, 1, 2], [2, 2, 0]])
    extra = np.array([[0.0, 150.0, -300.0], [42.0, 0.0, 7.0]])
    out = ctf_rfft_2d_batch(48, 3.0, opt, tilts, extra)
    assert out.shape == (2, 3, 48, 25) and out.dtype == np.float32
    for i in range(2):
        for j in range(3):
            f = tilts[i, j]
            single = ctf_rfft_2d(
                48, 3.0, 300.0, 2.7, 0.07, opt.defocus_u_angst[f] + extra[i, j], opt.defocus_v_angst[f] + extra[i, j],
                opt.defocus_angle_deg[f], opt.phase_shift_deg[f], opt.ctf_bfactor_angst2[f], opt.ctf_scale[f],
            )
            np.testing.assert_array_equal(out[i, j], single)


def test_batch_rejects_bad_tilt_index():
    with pytest.raises(ValueError):
        ctf_rfft_2d_batch(16, 3.0, _optics(), np.array([3]), np.array([0.0]))


def test_depth_defocus_by_hand():
    """YTilt = 30°, particle 10 px along +x from the centre: depth = [R(p−c)]_z = −sin 30°·10 = −5 px.

    dz = hand·pix·slope·depth = (−1)·2·1·(−5) = +10 Å (further underfocus). At tilt 0 the depth is 0.
    """
    geom = TiltSeriesGeometry(
        name="t", tomo_size_px=(100, 100, 50), image_size_px=(100, 100), pixel_size_angst=2.0,
        x_tilt_deg=[0.0, 0.0], y_tilt_deg=[0.0, 30.0], z_rot_deg=[0.0, 85.0], shift_angst=np.zeros((2, 2)), hand=-1.0,
    )
    p = np.array([[60.0, 50.0, 25.0]])
    dz = defocus_offsets_angst(geom, p)
    assert dz.shape == (1, 2)
    np.testing.assert_allclose(dz, [[0.0, 10.0]], atol=1e-9)


def test_batch_even_zernike_and_broadcast_extra():
    """Optics with rlnEvenZernike = [c] behave like a phase shift of −c; a scalar extra defocus broadcasts."""
    base = _optics(2)
    with_z = replace(base, even_zernike=np.array([0.25]))
    shifted = replace(base, phase_shift_deg=base.phase_shift_deg - np.rad2deg(0.25))
    a = ctf_rfft_2d_batch(32, 2.0, with_z, np.array([0, 1]), 100.0)
    b = ctf_rfft_2d_batch(32, 2.0, shifted, np.array([0, 1]), np.array([100.0, 100.0]))
    assert a.shape == (2, 32, 17)
    np.testing.assert_allclose(a, b, atol=1e-6)


@pytest.mark.parametrize("box", [15, 16])
def test_grid_rows_follow_fft_order_for_odd_and_even_boxes(box):
    """Every grid point equals the closed formula at (kx, ky) from rfft_frequencies_2d (fftfreq order)."""
    ky, kx = rfft_frequencies_2d(box, 2.0)
    k2 = kx**2 + ky**2
    lam = electron_wavelength_angst(300.0)
    gamma = -np.pi * lam * 10000.0 * k2 - np.arctan(0.1 / np.sqrt(0.99))
    np.testing.assert_allclose(_ctf(box_px=box), -np.sin(gamma), atol=2e-6)
