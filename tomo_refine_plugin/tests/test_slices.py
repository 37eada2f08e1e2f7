"""Central-slice extraction: exactness on the grid, trilinear accuracy, Hermitian half, and the
projection convention (slice with M = R·A is the FT of the box projected along the camera depth)."""
import numpy as np

from tomo_refine_plugin.compute.conventions import rotation_x, rotation_y, rotation_z
from tomo_refine_plugin.compute.fourier.slices import extract_central_slices_rfft_3d

S = 32


def _signed(n):
    k = np.arange(n)
    return np.where(k < (n + 1) // 2, k, k - n)


def _analytic(kx, ky, kz, sigma=(1.0, 1.2, 1.5), centre=(1.0, -0.5, 0.5)):
    """FT of an off-centre anisotropic Gaussian blob (Hermitian: f(−K) = conj f(K))."""
    env = np.exp(-2 * np.pi**2 * ((sigma[0] * kx / S) ** 2 + (sigma[1] * ky / S) ** 2 + (sigma[2] * kz / S) ** 2))
    return env * np.exp(-2j * np.pi * (kx * centre[0] + ky * centre[1] + kz * centre[2]) / S)


def _analytic_volume():
    kz, ky, kx = np.meshgrid(_signed(S), _signed(S), np.arange(S // 2 + 1), indexing="ij")
    return _analytic(kx, ky, kz).astype(np.complex64)


def _slice_coords(m):
    ky, kx = np.meshgrid(_signed(S), np.arange(S // 2 + 1), indexing="ij")
    k = np.stack([kx, ky, np.zeros_like(kx)], -1).astype(float)
    big = m.T @ k.reshape(-1, 3).T
    return kx, ky, big.reshape(3, *kx.shape)


def test_identity_slice_is_exact_kz0_plane():
    vol = _analytic_volume()
    out = extract_central_slices_rfft_3d(vol, np.eye(3), max_radius_px=S)
    np.testing.assert_allclose(out, vol[0], atol=1e-6)


def test_rotated_slice_matches_analytic_within_trilinear_error():
    vol = _analytic_volume()
    m = rotation_z(37.0) @ rotation_y(-52.0) @ rotation_x(11.0)
    out = extract_central_slices_rfft_3d(vol, m[None])[0]
    kx, ky, (gx, gy, gz) = _slice_coords(m)
    want = _analytic(gx, gy, gz)
    inside = kx**2 + ky**2 <= (S / 2) ** 2
    assert np.abs(out[~inside]).max() == 0
    err = np.abs(out[inside] - want[inside]).max()
    assert err < 0.03, err  # trilinear on a Gaussian ≥ 3.4 Fourier px wide
    # kx < 0 branch really used: a 180° turn about y sends every kx to −kx.
    # A 180° turn about y sends every kx to −kx, so only the conjugate branch is read.
    flip = extract_central_slices_rfft_3d(vol, rotation_y(180.0)[None])[0]
    want_flip = _analytic(-kx, ky, 0 * kx)
    np.testing.assert_allclose(flip[inside], want_flip[inside], atol=1e-5)


def test_projection_convention_real_space():
    """A blob at box offset c appears at (M·c)_xy in the projected image."""
    c = np.array([5.0, -3.0, 4.0])  # (x, y, z) px from the box centre
    z, y, x = np.meshgrid(*(np.arange(S) - S // 2,) * 3, indexing="ij")
    vol = np.exp(-((x - c[0]) ** 2 + (y - c[1]) ** 2 + (z - c[2]) ** 2) / (2 * 1.5**2))
    vol_ft = np.fft.rfftn(np.fft.ifftshift(vol)).astype(np.complex64)
    m = rotation_z(30.0) @ rotation_y(40.0)
    sl = extract_central_slices_rfft_3d(vol_ft, m)
    img = np.fft.fftshift(np.fft.irfft2(sl, s=(S, S)))
    iy, ix = np.unravel_index(np.argmax(img), img.shape)
    # M·c = (7.04, 0.60); the transpose convention would put it at (−0.40, −5.10).
    assert (ix - S // 2, iy - S // 2) == tuple(np.round((m @ c)[:2]).astype(int)) == (7, 1)
