"""The engine's Fourier primitives against an independent real-space projector.

The projection-slice theorem ties the two: the central slice of a volume's spectrum, taken with
rotation ``M``, is the spectrum of the volume rotated by ``M`` and summed along z. The real-space
side here rotates with ``scipy.ndimage.map_coordinates`` (cubic) and shares no code with the engine,
so a transposed matrix, a wrong Hermitian branch or an off-by-one centre fails these tests.
"""
import numpy as np
import pytest
from scipy import fft
from scipy.ndimage import map_coordinates

from tomo_refine_plugin.compute.conventions import euler_zyz_to_matrix
from tomo_refine_plugin.compute.fourier.insert import full_x_ranges, insert_slices_rfft_3d, slice_rows
from tomo_refine_plugin.compute.fourier.slices import extract_central_slices_rfft_3d

S = 32
BLOBS = [((4.0, -3.0, 2.0), 2.0, 1.0), ((-5.0, 1.0, -2.0), 1.6, 0.8), ((1.0, 6.0, 4.0), 1.8, 0.6),
         ((-1.0, -6.0, -5.0), 1.5, 0.5)]


def _phantom() -> np.ndarray:
    """Asymmetric sum of Gaussians, ``(z, y, x)``, centre at voxel S//2."""
    z, y, x = np.meshgrid(*(np.arange(S, dtype=float) - S // 2,) * 3, indexing="ij")
    vol = np.zeros((S, S, S))
    for (cx, cy, cz), sigma, amp in BLOBS:
        vol += amp * np.exp(-((x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2) / (2 * sigma**2))
    return vol


def _realspace_projection(vol, m) -> np.ndarray:
    """``image(x, y) = Σ_z vol(Mᵀ·(x, y, z))``: the volume turned by ``M``, summed along z."""
    g = np.arange(S, dtype=float) - S // 2
    z, y, x = np.meshgrid(g, g, g, indexing="ij")
    r = np.stack([x, y, z], -1) @ m  # rows: (Mᵀ r)ᵀ = rᵀ M
    coords = np.stack([r[..., 2], r[..., 1], r[..., 0]]) + S // 2
    return map_coordinates(vol, coords, order=3, mode="constant").sum(axis=0)


def _ncc(a, b) -> float:
    a = a - a.mean()
    b = b - b.mean()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


def _orientations(n, seed):
    rng = np.random.default_rng(seed)
    rot, psi = rng.uniform(-180, 180, (2, n))
    tilt = np.rad2deg(np.arccos(rng.uniform(-1, 1, n)))  # uniform on the sphere
    return euler_zyz_to_matrix(rot, tilt, psi)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_central_slice_equals_realspace_projection(seed):
    vol = _phantom()
    vol_ft = fft.rfftn(fft.ifftshift(vol)).astype(np.complex64)
    mats = _orientations(4, seed)
    slices = extract_central_slices_rfft_3d(vol_ft, mats)
    assert slices.shape == (4, S, S // 2 + 1)
    for m, sl in zip(mats, slices):
        fourier_img = fft.fftshift(fft.irfft2(sl, s=(S, S)))
        real_img = _realspace_projection(vol, m)
        # Trilinear interpolation of an unpadded spectrum blurs slightly: NCC 0.995-0.999 here.
        ncc = _ncc(fourier_img, real_img)
        assert ncc > 0.99
        if np.linalg.norm(m - m.T) > 0.5:  # the transposed convention must fit clearly worse
            assert _ncc(fourier_img, _realspace_projection(vol, m.T)) < ncc - 0.05


def test_inserting_realspace_projections_reconstructs_the_volume():
    vol = _phantom()
    mats = _orientations(400, 7)
    images = np.stack([_realspace_projection(vol, m) for m in mats])
    spectra = fft.rfft2(fft.ifftshift(images, axes=(-2, -1))).astype(np.complex64)[None]
    n_frames = len(mats)
    rows = slice_rows(mats, np.eye(3)[None], 1.0)
    data, _, mult = insert_slices_rfft_3d(
        spectra,
        np.ones(spectra.shape, np.float32),
        rows,
        np.ones((1, n_frames), bool),
        full_x_ranges(n_frames, S),
        S,
        1.0,
    )
    assert data.shape == (1, S, S, S // 2 + 1)
    avg = np.where(mult[0] > 1e-3, data[0] / np.maximum(mult[0], 1e-3), 0)
    rec = fft.fftshift(fft.irfftn(avg, s=(S, S, S)))
    z, y, x = np.meshgrid(*(np.arange(S) - S // 2,) * 3, indexing="ij")
    inside = x**2 + y**2 + z**2 < (S // 2 - 2) ** 2
    assert _ncc(rec[inside], vol[inside]) > 0.98
    # The mirror-image volume (wrong handedness of the insertion) must not fit as well.
    assert _ncc(rec[inside], vol[:, :, ::-1][inside]) < 0.8
