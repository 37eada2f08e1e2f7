"""Pixel parity with RELION 5.0.1 ``relion_tomo_subtomo --stack2d`` on the golden ``subtomo`` dataset.

Each RELION image is iFFT(−CTF·dose·FFT(window)) with the sub-pixel centring phase (and, for
``subtomo2d``, the circle crop at radius crop/2 in the 48 box followed by the centre crop to 32), for
the visible frames in tilt order. We rebuild every image from the input STAR files with the engine's
conventions (projection matrices, particle positions, depth-dependent defocus) and kernels (CTF,
dose, extraction) and require, per image:

* normalised cross-correlation ≥ 0.999 (the brief's bar), and
* max |ours − RELION| ≤ 1e-4 · RMS(RELION) (measured: 3.0e-6 without, 2.5e-6 with circle crop; the
  residual is float32 FFT rounding).

Sensitivity: flipping ``rlnTomoHand`` (wrong sign of the depth-dependent defocus) drops the min NCC
to 0.995 and raises the error to 0.39·RMS; leaving out the dose weights gives NCC 0.82.

Inputs come through the engine's I/O layer (``read_tomogram_set``, ``read_particle_set``,
``load_tilt_series``), as subtomo reads them.
"""
from __future__ import annotations

import numpy as np
import mrcfile
import pytest

from tomo_refine_plugin.compute.ctf import ctf_rfft_2d_batch, defocus_offsets_angst
from tomo_refine_plugin.compute.dose import dose_weights_rfft_2d
from tomo_refine_plugin.compute.fourier.extract import extract_ctf_premultiplied_rfft_2d, stack2d_images
from tomo_refine_plugin.compute.geometry import particle_positions_px, project_points
from tomo_refine_plugin.compute.io.particles import read_particle_set
from tomo_refine_plugin.compute.io.tomograms import load_tilt_series, read_tomogram_set

BOX = 48
NCC_MIN = 0.999
MAX_ERR_OVER_RMS = 1e-4


def _visible_frames(text: str) -> np.ndarray:
    return np.array([int(v) for v in str(text).strip("[]").split(",")], dtype=bool)


@pytest.fixture(scope="module")
def dataset(golden_dir):
    root = golden_dir / "subtomo"
    tset = read_tomogram_set(root / "tomograms.star")
    (name,) = tset.names()
    geometry = tset.geometry(name)
    optics = tset.optics(name)
    stack = load_tilt_series(tset, name)
    n_tilts = stack.shape[0]
    assert geometry.n_tilts == optics.n_tilts == n_tilts
    pix = geometry.pixel_size_angst
    pset = read_particle_set(root / "particles.star")
    rows = pset.for_tomogram(name)
    centred = pset.centred_angst(rows, geometry.tomo_size_px, pix)
    positions = particle_positions_px(
        centred, pix, geometry.tomo_size_px, pset.origins_angst(rows), pset.subtomo_matrices(rows)
    )
    uv = project_points(geometry.projection_matrices(), positions)
    dz = defocus_offsets_angst(geometry, positions)
    n = len(positions)
    ctf = ctf_rfft_2d_batch(BOX, pix, optics, np.broadcast_to(np.arange(n_tilts), (n, n_tilts)), dz)
    dose = dose_weights_rfft_2d(BOX, pix, optics.pre_exposure_e_per_angst2, optics.bfactor_per_dose_angst2)
    spectra = extract_ctf_premultiplied_rfft_2d(stack, uv, BOX, ctf * dose[None], workers=2)
    return root, pset.particle_names(rows), spectra


@pytest.mark.parametrize("run, crop, circle", [("subtomo2d_nocrop", 48, False), ("subtomo2d", 32, True)])
def test_stack2d_matches_relion(dataset, run, crop, circle):
    root, names, spectra = dataset
    out = root / "relion" / run
    table = read_particle_set(out / "particles.star").particles
    images = stack2d_images(spectra, crop, circle_crop=circle, workers=2)
    assert images.shape == (len(names), spectra.shape[1], crop, crop)
    nccs, errors, n_expected = [], [], 0
    for _, row in table.iterrows():
        i = names.index(row["rlnTomoParticleName"])
        visible = _visible_frames(row["rlnTomoVisibleFrames"])
        ref = mrcfile.read(root / row["rlnImageName"])  # paths are relative to the dataset folder
        ours = images[i][visible]
        n_expected += int(visible.sum())
        assert ours.shape == ref.shape
        for a, b in zip(ours.astype(np.float64), ref.astype(np.float64)):
            a0, b0 = a - a.mean(), b - b.mean()
            nccs.append((a0 * b0).sum() / np.sqrt((a0 * a0).sum() * (b0 * b0).sum()))
            errors.append(np.abs(a - b).max() / np.sqrt((b * b).mean()))
    assert len(table) == 16 and len(nccs) == n_expected > 0
    assert min(nccs) >= NCC_MIN, f"min NCC {min(nccs):.6f}"
    assert max(errors) <= MAX_ERR_OVER_RMS, f"max |err|/RMS {max(errors):.3g}"
