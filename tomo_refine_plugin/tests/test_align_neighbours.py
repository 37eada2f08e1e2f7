"""Neighbour subtraction (compute/align/neighbours.py): the per-shell scale, the residual, and the CC maps it feeds."""
import json
import math

import numpy as np

from tomo_refine_plugin.compute.align.ccmaps import compute_cc_maps
from tomo_refine_plugin.compute.align.neighbours import _image_shells, shell_scale, subtract_predicted_particles
from tomo_refine_plugin.compute.align.program import AlignOptions, _load_inputs, run_align
from tomo_refine_plugin.compute.dose import dose_weights_rfft_2d
from tomo_refine_plugin.compute.geometry import particle_positions_px
from tomo_refine_plugin.compute.io.tomograms import load_tilt_series
from tomo_refine_plugin.compute.metrics import reprojection_error
from tomo_refine_plugin.compute.simulate.options import SimulationOptions
from tomo_refine_plugin.compute.simulate.program import simulate_dataset


def test_shell_scale_recovers_a_scale_per_shell():
    rng = np.random.default_rng(1)
    h, w, s = 64, 80, 32
    shells = _image_shells(h, w, s)
    model = np.fft.rfft2(rng.normal(size=(h, w)))
    truth = np.linspace(-3.0, -1.0, s // 2 + 1)
    scale = np.append(truth, 0.0)[shells].reshape(model.shape)
    noise = np.fft.rfft2(rng.normal(scale=0.01, size=(h, w)))
    a = shell_scale(model * scale + noise, model, shells, s // 2 + 1)
    assert a[0] == 0.0  # near-DC shell: never used, left out
    np.testing.assert_allclose(a[1:], truth[1:], atol=0.01)
    assert np.all(shell_scale(noise, np.zeros_like(model), shells, s // 2 + 1) == 0)  # no model power: 0


def _dataset(root, **kw):
    opts = dict(seed=3, n_tilts=9, tilt_step_deg=10.0, image_size_px=(192, 192), tomo_depth_px=64, box_px=32,
                n_particles=24, snr=1.0, ref_is_truth=True, angle_err_deg=(0, 0, 0), shift_err_px=0.0,
                position_err_px=0.0)
    opts.update(kw)
    simulate_dataset(root, SimulationOptions(**opts), log=lambda *a: None)
    return root


def _engine_inputs(root, box):
    inputs = _load_inputs(AlignOptions(o=str(root / "unused"), b=box, i=str(root / "optimisation_set.star")))
    tset, pset = inputs.tset, inputs.pset
    rows = pset.for_tomogram("TS_01")
    g, optics = tset.geometry("TS_01"), tset.optics("TS_01")
    pos = particle_positions_px(pset.centred_angst(rows, g.tomo_size_px, g.pixel_size_angst), g.pixel_size_angst,
                                g.tomo_size_px, pset.origins_angst(rows))
    dose = dose_weights_rfft_2d(box, g.pixel_size_angst, optics.pre_exposure_e_per_angst2,
                                optics.bfactor_per_dose_angst2)
    stack = np.array(load_tilt_series(tset, "TS_01"), np.float32)
    return stack, g, optics, pos, pset.particle_matrices(rows), rows["rlnRandomSubset"].to_numpy(int) - 1, \
        inputs.reference.halves, dose


def test_residual_is_the_noise_and_the_scale_is_the_contrast(tmp_path):
    """At the true geometry the residual's variance is the simulator's noise variance (to 3 %; the raw images
    carry 1.28x more), and the fitted scale is one constant over the shells the particles fill."""
    root = _dataset(tmp_path / "d", inside_margin_px=32.0)  # every particle's 64-px box inside every tilt
    sigma = json.loads((root / "truth" / "errors.json").read_text())["noise_sigma"]
    box = 64
    stack, g, optics, pos, mats, half, halves, dose = _engine_inputs(root, box)
    # No errors were injected: the geometry read is the true one.
    raw_var = float(stack.var())
    own, power = subtract_predicted_particles(stack, g, optics, pos, mats, half, halves, dose, dose > 0.02)
    assert raw_var > 1.2 * sigma**2
    assert abs(float(stack.var()) / sigma**2 - 1.0) < 0.03
    assert np.allclose(power[:, 4:].mean(), sigma**2, rtol=0.05)  # per-pixel power, white
    low = -own[:, 0, 2:box // 4]
    assert np.all(low > 0)  # dark particles: the data is a negative multiple of the (white) prediction
    profile = low.mean(0)  # per shell, over the tilts (one tilt's shells still carry noise at SNR 1)
    assert np.std(profile) / np.mean(profile) < 0.05


def test_residual_maps_of_an_isolated_particle_equal_its_raw_maps(tmp_path):
    """With one particle there are no neighbours: the maps from the residual with the particle put back
    (own_scale) must be the maps of the raw images (up to the window's circular edge, NCC > 0.999)."""
    root = _dataset(tmp_path / "d", n_particles=1, snr=math.inf)
    box = 48
    stack, g, optics, pos, mats, half, halves, dose = _engine_inputs(root, box)
    freq = np.ones((g.n_tilts, box, box // 2 + 1))
    mask = dose > 0.02
    raw = compute_cc_maps(stack, g, optics, pos, mats, half, halves, freq, dose, mask, 6)
    own, _ = subtract_predicted_particles(stack, g, optics, pos, mats, half, halves, dose, mask)
    res = compute_cc_maps(stack, g, optics, pos, mats, half, halves, freq, dose, mask, 6, own_scale=own)
    a, b = raw.maps[raw.visible], res.maps[res.visible]
    assert a.size and np.abs(a).max() > 0
    ncc = (a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum())
    assert ncc > 0.999, ncc


def test_subtraction_improves_a_crowded_noiseless_alignment(tmp_path):
    """Crowded particles, no noise: what is left is the bias that neighbours put into each CC peak. Subtracting
    them must shrink the reprojection error (measured here: 0.0195 -> 0.0124 px)."""
    root = _dataset(tmp_path / "d", n_particles=40, snr=math.inf, angle_err_deg=(0.3, 0.3, 0.3), shift_err_px=2.0,
                    position_err_px=1.5, n_tilts=21, tilt_step_deg=6.0)
    truth = (root / "truth" / "tomograms.star", root / "truth" / "particles.star", None)
    errors = {}
    for keep in (False, True):
        r = run_align(AlignOptions(o=str(tmp_path / f"o{keep}"), b=48, r=6, i=str(root / "optimisation_set.star"), j=2,
                                   keep_neighbours=keep), log=lambda *a: None)
        errors[keep] = reprojection_error((r.tomograms_star, r.particles_star, None), truth)["rms_px"]
    assert errors[False] < 0.75 * errors[True], errors
    assert errors[False] < 0.015, errors
