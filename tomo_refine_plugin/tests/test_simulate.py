"""The dataset simulator: complete RELION-5 files, signal where the truth says, errors as recorded.

The strongest check is :func:`test_image_formation_matches_golden_simulator`: rendering the golden
``align`` truth with this simulator's own projector, CTF, dose filter and placement reproduces the
golden images' signal (made by an independent simulator, analytic projector) down to the noise.
"""
from __future__ import annotations

import json
import math

import mrcfile
import numpy as np
import pytest

from tomo_refine_plugin.compute.conventions import euler_zyz_to_matrix
from tomo_refine_plugin.compute.io import (
    read_fsc,
    read_mrc,
    read_optimisation_set,
    read_particle_set,
    read_tomogram_set,
    read_trajectories,
    load_tilt_series,
)
from tomo_refine_plugin.compute.io.star import parse_vector
from tomo_refine_plugin.compute.metrics import (
    deformation_displacement_px,
    projected_positions_px,
    reprojection_error,
)
from tomo_refine_plugin.compute.simulate import SimulationOptions, dose_symmetric_order, simulate_dataset
from tomo_refine_plugin.compute.simulate.physics import (
    grant_grigorieff_dose_weight,
    relion_ctf,
    wavelength_angst,
)
from tomo_refine_plugin.compute.simulate.program import render_particles
from tomo_refine_plugin.compute.simulate.projector import prepare_map

ERRORS = dict(angle_err_deg=(0.3, 0.2, 0.4), shift_err_px=2.0, position_err_px=1.5)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("sim")
    result = simulate_dataset(out, SimulationOptions(n_tomograms=2, n_particles=8, n_tilts=11, seed=5,
                                                     motion_angst_per_step=1.0, **ERRORS), log=lambda *_: None)
    return out, result


def _read(root, prefix=""):
    tset = read_tomogram_set(root / prefix / "tomograms.star")
    pset = read_particle_set(root / prefix / "particles.star")
    return tset, pset


def test_files_exist_and_parse(dataset, monkeypatch):
    root, result = dataset
    monkeypatch.chdir(root)
    for rel in ["tilt_series/TS_01.mrcs", "tilt_series/TS_02.star", "tomograms.star", "particles.star",
                "ref_half1.mrc", "ref_half2.mrc", "mask.mrc", "fsc.star", "optimisation_set.star",
                "truth/map.mrc", "truth/tomograms.star", "truth/tilt_series/TS_01.star", "truth/particles.star",
                "truth/motion.star", "truth/optimisation_set.star", "truth/errors.json"]:
        assert (root / rel).is_file(), rel
    tset, pset = _read(root)
    assert tset.names() == ["TS_01", "TS_02"] and result.tomo_names == ("TS_01", "TS_02")
    assert tset.image_size_px("TS_01") == (192, 192) and tset.tomo_size_px("TS_02") == (192, 192, 64)
    stack = load_tilt_series(tset, "TS_02")
    assert stack.shape == (11, 192, 192) and stack.dtype == np.float32
    with mrcfile.open(root / "tilt_series/TS_01.mrcs", permissive=True) as m:
        assert m.voxel_size.x == pytest.approx(6.0)
    particles = pset.particles
    assert len(particles) == 16 and result.n_particles == 16
    assert particles["rlnRandomSubset"].tolist() == [1, 2] * 8
    assert particles["rlnTomoParticleName"].iloc[9] == "TS_02/2"
    oset = read_optimisation_set(root / "optimisation_set.star")
    assert (oset.particles, oset.tomograms, oset.reference_map1, oset.reference_mask) == (
        "particles.star", "tomograms.star", "ref_half1.mrc", "mask.mrc")
    truth_set = read_optimisation_set(root / "truth/optimisation_set.star")
    assert truth_set.trajectories == "truth/motion.star"
    half1, pix = read_mrc(root / "ref_half1.mrc")
    truth_map, _ = read_mrc(root / "truth/map.mrc")
    assert half1.shape == truth_map.shape == (32, 32, 32) and pix == pytest.approx(6.0)
    # Slightly low-passed, slightly noisy: close to the truth, not equal to it.
    corr = np.corrcoef(half1.ravel(), truth_map.ravel())[0, 1]
    assert 0.9 < corr < 0.9999
    mask, _ = read_mrc(root / "mask.mrc")
    assert mask.max() == pytest.approx(1.0) and mask.min() == 0.0 and mask[16, 16, 16] == 1.0
    fsc = read_fsc(root / "fsc.star")
    assert len(fsc) == 17 and fsc["rlnFourierShellCorrelationCorrected"].iloc[1] > 0.95
    errors = json.loads((root / "truth/errors.json").read_text())
    assert errors["options"]["seed"] == 5 and errors["noise_sigma"] == pytest.approx(result.noise_sigma)


def test_dose_symmetric_order_matches_golden(golden_dir):
    errors = json.loads((golden_dir / "align/truth/errors.json").read_text())
    nominal = np.arange(-60, 61, 4.0)
    assert dose_symmetric_order(nominal, 2).tolist() == errors["frame_sequence_chronological"]
    assert dose_symmetric_order(nominal, 2, symmetric=False).tolist() == list(range(31))


def test_injected_errors_match_errors_json(dataset, monkeypatch):
    root, _ = dataset
    monkeypatch.chdir(root)
    errors = json.loads((root / "truth/errors.json").read_text())
    est_t, est_p = _read(root)
    true_t, true_p = _read(root, "truth")
    for name in ("TS_01", "TS_02"):
        recorded = errors["errors"]["tomograms"][name]
        est, true = est_t.tilt_table(name), true_t.tilt_table(name)
        angle_err = np.stack([est[c] - true[c] for c in ("rlnTomoXTilt", "rlnTomoYTilt", "rlnTomoZRot")], -1)
        np.testing.assert_allclose(angle_err, recorded["tilt_err_deg_xtilt_ytilt_zrot"], atol=1e-9)
        shift_err = np.stack([est[c] - true[c] for c in ("rlnTomoXShiftAngst", "rlnTomoYShiftAngst")], -1) / 6.0
        np.testing.assert_allclose(shift_err, recorded["shift_err_px"], atol=1e-9)
        cols = ["rlnCenteredCoordinateXAngst", "rlnCenteredCoordinateYAngst", "rlnCenteredCoordinateZAngst"]
        pos_err = (est_p.for_tomogram(name)[cols].to_numpy() - true_p.for_tomogram(name)[cols].to_numpy()) / 6.0
        np.testing.assert_allclose(pos_err, recorded["pos_err_px"], atol=1e-9)
        # Everything else is identical between the perturbed and the true files.
        for col in ("rlnDefocusU", "rlnMicrographPreExposure", "rlnMicrographName"):
            assert est[col].tolist() == true[col].tolist()
        motion = read_trajectories(root / "truth/motion.star")
        names = [f"{name}/{i}" for i in range(1, 9)]
        np.testing.assert_allclose(motion.for_particles(names, 11), recorded["trajectories_angst"], atol=1e-9)
    # The requested RMS values are what was injected (loosely: few samples).
    all_angles = np.concatenate([errors["errors"]["tomograms"][n]["tilt_err_deg_xtilt_ytilt_zrot"] for n in
                                 ("TS_01", "TS_02")])
    assert np.sqrt(np.mean(all_angles**2, axis=0)) == pytest.approx([0.3, 0.2, 0.4], rel=0.5)
    # Motion: smooth, zero at the first exposure, RMS step as requested.
    traj = np.array(errors["errors"]["tomograms"]["TS_01"]["trajectories_angst"])
    seq = errors["tomograms"]["TS_01"]["frame_sequence_chronological"]
    assert np.all(traj[:, seq[0]] == 0.0)
    steps = np.diff(traj[:, seq], axis=1)
    assert np.sqrt(np.mean(np.sum(steps**2, -1))) == pytest.approx(1.0, rel=0.25)


def test_reprojection_error_of_simulated_errors(dataset, monkeypatch):
    root, _ = dataset
    monkeypatch.chdir(root)
    truth = ("truth/tomograms.star", "truth/particles.star", "truth/motion.star")
    # Without motion in the estimate the truth's trajectories count as error too; with them, only the injected ones.
    before = reprojection_error(("tomograms.star", "particles.star", None), truth)
    assert 1.5 < before["rms_px"] < 8.0 and before["n"] == 16 * 11
    same = reprojection_error(truth, truth)
    assert same["rms_px"] == 0.0


@pytest.mark.parametrize("deformation_px", [0.0, 1.5])
def test_noiseless_signal_lies_at_the_projected_position(tmp_path, monkeypatch, deformation_px):
    # No CTF, no dose filter, no noise: each particle's image is the projection of a map whose centre of
    # mass is the box centre, so the image centroid must be the projected true position (motion and
    # deformation included), read back through the truth files and the metric's projector.
    options = SimulationOptions(n_particles=6, n_tilts=9, tilt_step_deg=12.0, snr=math.inf, apply_ctf=False,
                                apply_dose=False, motion_angst_per_step=2.0, deformation_px=deformation_px,
                                seed=11, **ERRORS)
    simulate_dataset(tmp_path, options, log=lambda *_: None)
    monkeypatch.chdir(tmp_path)
    tset, pset = _read(tmp_path, "truth")
    motion = read_trajectories("truth/motion.star")
    names = [f"TS_01/{i}" for i in range(1, 7)]
    uv = projected_positions_px(tset, pset, motion, "TS_01", names)  # (6, 9, 2)
    stack = -load_tilt_series(tset, "TS_01").astype(np.float64)  # particles are dark
    assert stack.min() > -1e-3 * stack.max()  # dark particles; only interpolation ringing below zero
    half = 14  # > particle radius (<= 0.22·32 + 2.5σ ≈ 14 px)
    yy, xx = np.mgrid[-half:half + 1, -half:half + 1]
    checked, worst = 0, 0.0
    for p in range(6):
        others = np.delete(uv, p, axis=0)
        for f in range(9):
            centre = np.floor(uv[p, f] + 0.5).astype(int)
            isolated = np.all(np.linalg.norm(others[:, f] - uv[p, f], axis=-1) > 2 * half + 2)
            inside = np.all(centre - half >= 0) and np.all(centre + half < 192)
            if not (isolated and inside):
                continue
            window = stack[f, centre[1] - half:centre[1] + half + 1, centre[0] - half:centre[0] + half + 1]
            centroid = np.array([(window * xx).sum(), (window * yy).sum()]) / window.sum() + centre
            assert np.linalg.norm(centroid - uv[p, f]) < 0.05, (p, f, centroid, uv[p, f])
            worst = max(worst, np.linalg.norm(centroid - uv[p, f]))
            checked += 1
    assert checked >= 20
    print(f"checked {checked} particle-tilts, worst centroid offset {worst:.3f} px")
    if deformation_px > 0:
        # The deformation really moved the particles (so the centroid test above saw it), by about what was asked.
        assert tset.row("TS_01")["rlnTomoDeformationType"] == "linear"
        coefficients = [parse_vector(v) for v in tset.tilt_table("TS_01")["rlnTomoDeformationCoefficients"]]
        moved = np.concatenate([deformation_displacement_px(uv[:, f], "linear", coefficients[f], (1, 1), (192, 192))
                                for f in range(9)])
        assert 0.3 * deformation_px < np.sqrt(np.mean(np.sum(moved**2, -1))) < 3 * deformation_px


def test_deterministic_for_a_seed(tmp_path):
    options = SimulationOptions(n_particles=3, n_tilts=5, image_size_px=(96, 96), tomo_depth_px=32, box_px=24,
                                seed=7, **ERRORS)
    quiet = dict(log=lambda *_: None)
    simulate_dataset(tmp_path / "a", options, **quiet)
    simulate_dataset(tmp_path / "b", options, **quiet)
    simulate_dataset(tmp_path / "c", SimulationOptions(**{**options.__dict__, "seed": 8}), **quiet)
    for rel in ["tilt_series/TS_01.mrcs", "tilt_series/TS_01.star", "particles.star", "ref_half2.mrc",
                "truth/particles.star"]:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    assert (tmp_path / "a/tilt_series/TS_01.mrcs").read_bytes() != (tmp_path / "c/tilt_series/TS_01.mrcs").read_bytes()


def test_noise_seed_changes_the_noise_and_nothing_else(tmp_path):
    """Another noise draw of the same dataset: every STAR file and the references are byte-identical, and the
    images differ by noise of the same sigma (their difference has variance 2 sigma^2)."""
    options = SimulationOptions(n_particles=3, n_tilts=5, image_size_px=(96, 96), tomo_depth_px=32, box_px=24,
                                seed=7, snr=0.5, **ERRORS)
    quiet = dict(log=lambda *_: None)
    simulate_dataset(tmp_path / "a", options, **quiet)
    simulate_dataset(tmp_path / "b", SimulationOptions(**{**options.__dict__, "noise_seed": 1}), **quiet)
    simulate_dataset(tmp_path / "c", SimulationOptions(**{**options.__dict__, "noise_seed": 2}), **quiet)
    for rel in ["tilt_series/TS_01.star", "tomograms.star", "particles.star", "ref_half1.mrc", "ref_half2.mrc",
                "truth/particles.star", "truth/tomograms.star"]:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    sigma = json.loads((tmp_path / "a/truth/errors.json").read_text())["noise_sigma"]
    images = [mrcfile.read(tmp_path / d / "tilt_series/TS_01.mrcs").astype(np.float64) for d in "abc"]
    for other in images[1:]:
        assert np.std(images[0] - other) == pytest.approx(np.sqrt(2) * sigma, rel=0.02)
    assert np.std(images[1] - images[2]) == pytest.approx(np.sqrt(2) * sigma, rel=0.02)


def test_physics_by_hand():
    # λ(300 kV) = 0.019687 Å (relativistic); CTF(0) = +Q0 (RELION: positive at low k); dose weight(0) = 1.
    assert wavelength_angst(300.0) == pytest.approx(0.019687, abs=1e-6)
    zero = np.zeros((1, 1))
    assert relion_ctf(zero, zero, 300, 2.7, 0.07, 20000, 20000, 0) == pytest.approx(0.07)
    # Pure defocus term at k = 0.05 Å⁻¹ along u (Cs = 0, Q0 = 0): sin(π λ Δf k²).
    k = np.array([[0.05]])
    expected = np.sin(np.pi * wavelength_angst(300.0) * 20000 * 0.05**2)
    assert relion_ctf(zero, k, 300, 0.0, 0.0, 20000, 10000, 0)[0, 0] == pytest.approx(expected)
    # ... and along v it is ΔfV that counts (astigmatism angle 0: u = x).
    expected_v = np.sin(np.pi * wavelength_angst(300.0) * 10000 * 0.05**2)
    assert relion_ctf(k, zero, 300, 0.0, 0.0, 20000, 10000, 0)[0, 0] == pytest.approx(expected_v)
    # Grant & Grigorieff at k = 0.1 Å⁻¹ and 10 e/Å²: exp(-0.5·10 / (0.245·0.1^-1.665 + 2.81)).
    nc = 0.245 * 0.1**-1.665 + 2.81
    assert grant_grigorieff_dose_weight(zero, np.array([[0.1]]), 10.0)[0, 0] == pytest.approx(np.exp(-5.0 / nc))
    assert grant_grigorieff_dose_weight(zero, zero, 10.0)[0, 0] == 1.0


def test_image_formation_matches_golden_simulator(golden_dir, monkeypatch):
    # Render the golden 'align' truth with this simulator's own image formation and subtract it from the
    # golden images: what is left must be the golden noise (σ recorded in its errors.json), i.e. the
    # projector, the geometry conventions, CTF sign, depth defocus, dose filter and sub-pixel placement
    # all agree with an independent simulator. (A 1-px shift or a CTF sign flip leaves ~2x the variance.)
    monkeypatch.chdir(golden_dir / "align")
    tset, pset = read_tomogram_set("truth/tomograms.star"), read_particle_set("truth/particles.star")
    geometry, optics = tset.geometry("TS_01"), tset.optics("TS_01")
    errors = json.loads((golden_dir / "align/truth/errors.json").read_text())
    frames = [0, 9, 15, 22, 30]
    volume, _ = read_mrc("truth/map.mrc")
    positions = (pset.centred_angst(None, geometry.tomo_size_px, 6.0) / 6.0 + np.array(geometry.tomo_size_px) / 2)
    matrices = euler_zyz_to_matrix(*(pset.particles[c].to_numpy() for c in ("rlnAngleRot", "rlnAngleTilt",
                                                                             "rlnAnglePsi")))
    image, _, _ = render_particles(
        prepare_map(volume), geometry.projection_matrices()[frames], matrices,
        np.repeat(positions[:, None], len(frames), 1), geometry.image_size_px, geometry.tomo_size_px, 6.0,
        geometry.hand, optics.defocus_u_angst[frames], optics.defocus_v_angst[frames],
        optics.defocus_angle_deg[frames], optics.pre_exposure_e_per_angst2[frames],
        optics.voltage_kv, optics.cs_mm, optics.amplitude_contrast, 11.6,
    )
    golden = load_tilt_series(tset, "TS_01")[frames].astype(np.float64)
    noise_var = errors["noise_sigma"] ** 2
    residual = (golden - image).var() / noise_var
    assert residual == pytest.approx(1.0, abs=0.01)
    # and the signal is there at all: the golden images have ~2x the noise variance.
    assert golden.var() / noise_var > 1.5


@pytest.mark.parametrize("y_tilt_deg, offset_px, expected_extra_defocus_angst", [
    (0.0, (0.0, 0.0, 10.0), -60.0),   # untilted: depth = +10 px, hand -1, 6 Å/px -> ΔfU,V − 60 Å
    (30.0, (10.0, 0.0, 0.0), 30.0),   # [Ry(30°)·(10,0,0)]_z = −sin 30°·10 = −5 px -> +30 Å
])
def test_depth_dependent_defocus_by_hand(y_tilt_deg, offset_px, expected_extra_defocus_angst):
    # A particle off the tomogram centre must look exactly like one at the centre imaged with the defocus
    # changed by hand · pix · [R_f (p − c)]_z (notes §4.2); the placement is the same in both.
    from tomo_refine_plugin.compute.conventions import relion_angles_to_projection

    box, pix, size = 16, 6.0, (64, 64, 32)
    rng = np.random.default_rng(0)
    volume = rng.random((box, box, box))
    coeffs = prepare_map(volume)
    proj = relion_angles_to_projection([0.0], [y_tilt_deg], [0.0], [0.0], [0.0], pix, size, (64, 64))
    centre = np.array(size) / 2.0
    moved = centre + np.array(offset_px)
    # Shift the image back so both land on the same pixel: compare the particle at 'moved' with the one at
    # the centre whose projection is then translated by the same (integer) amount.
    uv_moved = proj[0, :2, :3] @ moved + proj[0, :2, 3]
    uv_centre = proj[0, :2, :3] @ centre + proj[0, :2, 3]
    shift = uv_moved - uv_centre
    common = dict(image_size_px=(64, 64), tomo_size_px=size, pixel_size_angst=pix, hand=-1.0,
                  defocus_angle_deg=np.zeros(1), pre_exposure_e_per_angst2=np.zeros(1), voltage_kv=300.0,
                  cs_mm=2.7, amplitude_contrast=0.07, radius_px=4.0)
    eye = np.eye(3)[None]
    off_centre, _, _ = render_particles(coeffs, proj, eye, moved[None, None], defocus_u_angst=np.array([20000.0]),
                                        defocus_v_angst=np.array([19000.0]), **common)
    shifted_proj = proj.copy()
    shifted_proj[0, :2, 3] += shift
    reference, _, _ = render_particles(
        coeffs, shifted_proj, eye, centre[None, None],
        defocus_u_angst=np.array([20000.0 + expected_extra_defocus_angst]),
        defocus_v_angst=np.array([19000.0 + expected_extra_defocus_angst]), **common)
    np.testing.assert_allclose(off_centre, reference, atol=1e-9 * np.abs(reference).max())
    wrong, _, _ = render_particles(
        coeffs, shifted_proj, eye, centre[None, None],
        defocus_u_angst=np.array([20000.0 - expected_extra_defocus_angst]),
        defocus_v_angst=np.array([19000.0 - expected_extra_defocus_angst]), **common)
    assert np.abs(wrong - off_centre).max() > 1e-3 * np.abs(reference).max()


def test_blob_projector_equals_the_sampled_map():
    # The analytic projector is the line integral of the same blobs render_phantom samples: for the identity it
    # is the map summed along z (to float32 rounding), for a rotation it agrees with rotating the sampled map by
    # cubic B-spline interpolation (which blurs the highest frequencies a little: ~3e-4 of the peak).
    from tomo_refine_plugin.compute.simulate.phantom import make_phantom, render_phantom
    from tomo_refine_plugin.compute.simulate.projector import project_blobs, project_map

    box, pix = 32, 5.0
    phantom = make_phantom(np.random.default_rng(3), box, pix)
    volume = render_phantom(phantom, box, pix)
    blobs = (phantom.centres_angst / pix, phantom.sigmas_angst / pix, phantom.amplitudes)
    flat = project_blobs(*blobs, np.eye(3)[None], box)[0]
    np.testing.assert_allclose(flat, volume.astype(np.float64).sum(0), atol=1e-6 * flat.max())
    rotation = euler_zyz_to_matrix(np.array([40.0]), np.array([70.0]), np.array([-25.0]))
    exact = project_blobs(*blobs, rotation, box)[0]
    interpolated = project_map(prepare_map(volume), rotation)[0]
    assert np.abs(exact - interpolated).max() < 2e-3 * exact.max()
    # ... and a wrong convention (the transposed rotation) is far off.
    assert np.abs(project_blobs(*blobs, rotation.transpose(0, 2, 1), box)[0] - exact).max() > 0.1 * exact.max()


def test_reference_is_truth_and_particles_inside_every_tilt(tmp_path, monkeypatch):
    options = SimulationOptions(n_particles=12, n_tilts=9, tilt_step_deg=15.0, image_size_px=(128, 128),
                                tomo_depth_px=48, box_px=24, seed=2, ref_is_truth=True, inside_margin_px=20.0)
    simulate_dataset(tmp_path, options, log=lambda *_: None)
    truth_map, _ = read_mrc(tmp_path / "truth/map.mrc")
    for half in ("ref_half1.mrc", "ref_half2.mrc"):
        np.testing.assert_array_equal(read_mrc(tmp_path / half)[0], truth_map)
    monkeypatch.chdir(tmp_path)
    tset, pset = _read(tmp_path, "truth")
    uv = projected_positions_px(tset, pset, None, "TS_01", [f"TS_01/{i}" for i in range(1, 13)])
    assert uv.min() >= 20.0 and uv.max() <= 128 - 20.0
    with pytest.raises(ValueError, match="inside every tilt image"):
        simulate_dataset(tmp_path / "x", SimulationOptions(**{**options.__dict__, "inside_margin_px": 60.0}),
                         log=lambda *_: None)
