"""tomo-refine align end to end: golden accuracy (every tilt home), simulated recovery, outputs, bad input."""
import json
import shutil

import mrcfile
import numpy as np
import pytest

from tomo_refine_plugin.compute.align.program import AlignOptions, run_align
from tomo_refine_plugin.compute.errors import InputError
from tomo_refine_plugin.compute.metrics import reprojection_error
from tomo_refine_plugin.compute.io.star import read_star, write_star


def _errors(paths, truth_dir):
    """Reprojection error (golden README metric) of (tomograms, particles) against ``truth_dir/truth``."""
    return reprojection_error((paths[0], paths[1], None),
                              (truth_dir / "truth" / "tomograms.star", truth_dir / "truth" / "particles.star", None))


@pytest.fixture(scope="module")
def golden_align(golden_dir, tmp_path_factory):
    src = golden_dir / "align"
    out = tmp_path_factory.mktemp("align_golden") / "out"
    logs = []
    result = run_align(AlignOptions(o=str(out), b=48, r=10, i=str(src / "optimisation_set.star"), j=2), log=logs.append)
    return src, out, result, logs


def test_golden_align_every_tilt_converges(golden_align):
    """RELION 5.0.1 on this set: RMS 1.235 px, max 7.44 (one tilt stuck 6.9 px off)."""
    src, out, result, _ = golden_align
    e = _errors((result.tomograms_star, result.particles_star), src)
    before = _errors((src / "tomograms.star", src / "particles.star"), src)
    assert before["rms_px"] == pytest.approx(3.723, abs=1e-3)  # eval_before.txt
    assert e["rms_px"] <= 0.1, e["rms_px"]
    assert e["max_px"] <= 0.5, e["max_px"]
    assert e["per_tilt_rms_px"]["TS_01"].max() <= 0.15  # no tilt left behind


def test_golden_align_outputs(golden_align):
    src, out, result, logs = golden_align
    ts = read_star(out / "tilt_series" / "TS_01.star")["TS_01"]
    for col in ("rlnTomoXTilt", "rlnTomoYTilt", "rlnTomoZRot", "rlnTomoXShiftAngst", "rlnTomoYShiftAngst",
                "rlnTomoProjX", "rlnTomoProjY", "rlnTomoProjZ", "rlnTomoProjW", "rlnDefocusU", "rlnMicrographName"):
        assert col in ts.columns, col
    parts = read_star(out / "particles.star")["particles"]
    assert (parts[["rlnOriginXAngst", "rlnOriginYAngst", "rlnOriginZAngst"]].to_numpy() == 0).all()
    oset = read_star(out / "optimisation_set.star")[""]
    assert oset["rlnTomoReferenceMap1File"].endswith("ref_half1.mrc")  # kept (RELION drops it)
    assert oset["rlnTomoParticlesFile"] == str(out / "particles.star")
    assert (out / "note.txt").read_text().startswith("Command:")
    for name in ("TS_01_projections.star", "TS_01_positions.star", "TS_01_report.json"):
        assert (out / "temp" / name).is_file()
    report = read_star(out / "report" / "align_report.star")["TS_01"]
    assert len(report) == 31 and (report["tomoRefineParticlesSeen"] > 0).all()
    # The tilt RELION loses (table row 24) must show up as one of the biggest movers.
    assert report["tomoRefineMeanMovePx"].to_numpy().argsort()[-5:].tolist().count(23) == 1
    assert (out / "report" / "TS_01_report.png").stat().st_size > 1000
    json.loads((out / "report" / "align_report.json").read_text())
    # Resume: a finished tomogram is not recomputed, and the merge gives the same files.
    before = (out / "particles.star").read_text()
    logs2 = []
    run_align(AlignOptions(o=str(out), b=48, r=10, i=str(src / "optimisation_set.star"), only_do_unfinished=True),
              log=logs2.append)
    assert any("already finished" in line for line in logs2)
    assert (out / "particles.star").read_text() == before


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    from tomo_refine_plugin.compute.simulate.options import SimulationOptions
    from tomo_refine_plugin.compute.simulate.program import simulate_dataset

    out = tmp_path_factory.mktemp("align_sim")
    simulate_dataset(out, SimulationOptions(seed=5, snr=2.0, n_particles=24, box_px=48, image_size_px=(256, 256),
                                            angle_err_deg=(0.3, 0.3, 0.3), shift_err_px=2.0, position_err_px=1.5),
                     log=lambda *a: None)
    return out


def test_true_geometry_stays_put(simulated, tmp_path):
    r = run_align(AlignOptions(o=str(tmp_path / "o"), b=48, r=6, i=str(simulated / "truth" / "optimisation_set.star"),
                               j=2), log=lambda *a: None)
    assert _errors((r.tomograms_star, r.particles_star), simulated)["rms_px"] <= 0.1


def test_recovers_injected_errors(simulated, tmp_path):
    before = _errors((simulated / "tomograms.star", simulated / "particles.star"), simulated)
    assert before["rms_px"] > 2.5
    r = run_align(AlignOptions(o=str(tmp_path / "o"), b=48, r=6, i=str(simulated / "optimisation_set.star"), j=2),
                  log=lambda *a: None)
    e = _errors((r.tomograms_star, r.particles_star), simulated)
    assert e["rms_px"] <= 0.1
    assert e["max_px"] <= 0.5


def test_pad_samples_the_same_cc_maps_finer(simulated, tmp_path):
    """--pad 2: the CC maps zero-padded to two samples per px. Value and gradient stay consistent (unlike RELION's
    pad > 1), so the optimum is the same one: the two results agree to 0.02 px and both recover the truth."""
    runs = {}
    for pad in (1, 2):
        r = run_align(AlignOptions(o=str(tmp_path / f"o{pad}"), b=48, r=6, i=str(simulated / "optimisation_set.star"),
                                   j=2, pad=pad), log=lambda *a: None)
        runs[pad] = (r.tomograms_star, r.particles_star)
        assert _errors(runs[pad], simulated)["rms_px"] <= 0.1
    between = reprojection_error((*runs[2], None), (*runs[1], None))
    assert between["rms_px"] < 0.02, between["rms_px"]  # measured 0.0019 px


# ----------------------------------------------------------------------------------------------- bad input
def _copy_golden(golden_dir, tmp_path):
    src = golden_dir / "align"
    for name in ("optimisation_set.star", "tomograms.star", "particles.star", "ref_half1.mrc", "ref_half2.mrc",
                 "mask.mrc"):
        shutil.copy(src / name, tmp_path / name)
    shutil.copytree(src / "tilt_series", tmp_path / "tilt_series")
    return tmp_path


def _expect_error(tmp_path, match, **kw):
    out = tmp_path / "out"
    kw.setdefault("b", 48)
    kw.setdefault("r", 10)
    kw.setdefault("i", str(tmp_path / "optimisation_set.star"))
    with pytest.raises(InputError, match=match):
        run_align(AlignOptions(o=str(out), **kw), log=lambda *a: None)
    assert not out.exists()


def test_bad_input_is_refused_without_output(golden_dir, tmp_path):
    d = _copy_golden(golden_dir, tmp_path)
    _expect_error(d, "larger than --b", b=40, r=10)
    _expect_error(d, "box/2", r=22)
    _expect_error(d, "--pad 5 must be between 1 and 4", pad=5)
    _expect_error(d, "not yet available", motion=True)
    _expect_error(d, "not yet available", deformation=True)
    _expect_error(d, "ignored by RELION", aniso=True)
    _expect_error(d, "ignored by RELION", whiten_abs=True)
    _expect_error(d, "not in the tomogram set", only_tomos=("TS_99",))
    # Half map with the wrong voxel size.
    with mrcfile.open(d / "ref_half1.mrc") as m:
        data = m.data.copy()
    with mrcfile.new(d / "bad_pix.mrc") as m:
        m.set_data(data)
        m.voxel_size = 5.0
    _expect_error(d, "voxel size", ref1=str(d / "bad_pix.mrc"), ref2=str(d / "bad_pix.mrc"))
    # NaN in a half map.
    data[3, 4, 5] = np.nan
    with mrcfile.new(d / "nan.mrc") as m:
        m.set_data(data)
        m.voxel_size = 6.0
    _expect_error(d, "NaN", ref1=str(d / "nan.mrc"))
    # No rlnRandomSubset.
    blocks = read_star(d / "particles.star")
    blocks["particles"] = blocks["particles"].drop(columns=["rlnRandomSubset"])
    write_star(blocks, d / "no_subset.star")
    _expect_error(d, "rlnRandomSubset", p=str(d / "no_subset.star"))
    # A particle of a tomogram the tomogram set does not have: named, not silently left out.
    blocks = read_star(d / "particles.star")
    blocks["particles"].loc[blocks["particles"].index[0], "rlnTomoName"] = "TS_99"
    write_star(blocks, d / "foreign.star")
    _expect_error(d, "TS_99", p=str(d / "foreign.star"))
    # A requested tomogram without particles.
    blocks = read_star(d / "tomograms.star")
    g = blocks["global"]
    g2 = g.copy()
    g2["rlnTomoName"] = "TS_02"
    import pandas as pd

    blocks["global"] = pd.concat([g, g2], ignore_index=True)
    write_star(blocks, d / "two_tomos.star")
    ts = read_star(d / "tilt_series" / "TS_01.star")["TS_01"]
    write_star({"TS_02": ts}, d / "tilt_series" / "TS_02.star")
    blocks["global"]["rlnTomoTiltSeriesStarFile"] = [str(d / "tilt_series" / "TS_01.star"),
                                                     str(d / "tilt_series" / "TS_02.star")]
    write_star(blocks, d / "two_tomos.star")
    _expect_error(d, "has no particles", t=str(d / "two_tomos.star"), only_tomos=("TS_02",))
    # The same tomogram set in a plain run: TS_02 would come back unrefined, so it is refused by name.
    _expect_error(d, "TS_02 of the tomogram set have no particles", t=str(d / "two_tomos.star"))


def test_two_tomograms_scale_out_then_merge(golden_dir, tmp_path):
    """--only_tomos per tomogram, then --merge_only; identical copies give identical results."""
    import pandas as pd

    d = _copy_golden(golden_dir, tmp_path)
    tomos = read_star(d / "tomograms.star")
    g = tomos["global"]
    g2 = g.copy()
    g2["rlnTomoName"] = "TS_02"
    g2["rlnTomoTiltSeriesStarFile"] = "tilt_series/TS_02.star"
    tomos["global"] = pd.concat([g, g2], ignore_index=True)
    write_star(tomos, d / "tomograms.star")
    write_star({"TS_02": read_star(d / "tilt_series" / "TS_01.star")["TS_01"]}, d / "tilt_series" / "TS_02.star")
    parts = read_star(d / "particles.star")
    p = parts["particles"].iloc[:12]  # a dozen particles keep this test short
    p2 = p.copy()
    p2["rlnTomoName"] = "TS_02"
    p2["rlnTomoParticleName"] = [n.replace("TS_01", "TS_02") for n in p["rlnTomoParticleName"]]
    parts["particles"] = pd.concat([p2, p], ignore_index=True)  # TS_02 first: row order must be kept
    write_star(parts, d / "particles.star")
    out = tmp_path / "out"
    opts = dict(o=str(out), b=48, r=10, i=str(d / "optimisation_set.star"), j=2)
    r2 = run_align(AlignOptions(only_tomos=("TS_02",), **opts), log=lambda *a: None)
    assert r2.tomograms_star is None and not (out / "tomograms.star").exists()
    with pytest.raises(InputError, match="TS_01"):
        run_align(AlignOptions(merge_only=True, **opts), log=lambda *a: None)
    run_align(AlignOptions(only_tomos=("TS_01",), **opts), log=lambda *a: None)
    merged = run_align(AlignOptions(merge_only=True, **opts), log=lambda *a: None)
    ts1 = read_star(out / "tilt_series" / "TS_01.star")["TS_01"]
    ts2 = read_star(out / "tilt_series" / "TS_02.star")["TS_02"]
    cols = ["rlnTomoXTilt", "rlnTomoYTilt", "rlnTomoZRot", "rlnTomoXShiftAngst", "rlnTomoYShiftAngst"]
    np.testing.assert_array_equal(ts1[cols].to_numpy(), ts2[cols].to_numpy())
    got = read_star(merged.particles_star)["particles"]
    assert got["rlnTomoParticleName"].tolist() == parts["particles"]["rlnTomoParticleName"].tolist()
    xyz = ["rlnCenteredCoordinateXAngst", "rlnCenteredCoordinateYAngst", "rlnCenteredCoordinateZAngst"]
    np.testing.assert_array_equal(got[xyz].to_numpy()[:12], got[xyz].to_numpy()[12:])
    assert not np.allclose(got[xyz].to_numpy()[:12], p[xyz].to_numpy())  # they did move
    assert set(read_star(out / "report" / "align_report.star")) == {"TS_01", "TS_02"}


def test_fused_cc_kernel_matches_shared_building_blocks(golden_dir):
    """The fused prediction/CC kernel equals the path built from the shared slice, CTF, dose and
    extraction functions (which the subtomo golden tests pin to RELION)."""
    from tomo_refine_plugin.compute.align.ccmaps import compute_cc_maps
    from tomo_refine_plugin.compute.align.program import _load_inputs
    from tomo_refine_plugin.compute.io.tomograms import load_tilt_series
    from tomo_refine_plugin.compute.align.reference import shell_weight_2d
    from tomo_refine_plugin.compute.align.weights import (frequency_limit_mask, noise_power_spectra,
                                                          whitening_weights)
    from tomo_refine_plugin.compute.dose import dose_weights_rfft_2d
    from tomo_refine_plugin.compute.geometry import particle_positions_px

    src = golden_dir / "align"
    inp = _load_inputs(AlignOptions(o="unused", b=48, r=10, i=str(src / "optimisation_set.star")))
    g, optics = inp.tset.geometry("TS_01"), inp.tset.optics("TS_01")
    rows = inp.pset.for_tomogram("TS_01").iloc[:6]
    pos = particle_positions_px(inp.pset.centred_angst(rows, g.tomo_size_px, 6.0), 6.0, g.tomo_size_px)
    pos[0, :2] = -400.0  # outside every tilt image: its maps must be zero on both paths
    stack = load_tilt_series(inp.tset, "TS_01")
    freq = whitening_weights(noise_power_spectra(stack, 48), 48) * shell_weight_2d(inp.reference, 5.0)[None]
    dose = dose_weights_rfft_2d(48, 6.0, optics.pre_exposure_e_per_angst2)
    args = (stack, g, optics, pos, inp.pset.particle_matrices(rows), rows["rlnRandomSubset"].to_numpy(int) - 1,
            inp.reference.halves, freq, dose, frequency_limit_mask(freq, dose, 0.02), 10)
    fused, ref = compute_cc_maps(*args, fused=True), compute_cc_maps(*args, fused=False)
    assert np.abs(ref.maps).max() > 0 and not ref.visible[0].any()
    np.testing.assert_allclose(fused.maps, ref.maps, atol=1e-6 * np.abs(ref.maps).max())
    np.testing.assert_allclose(fused.tilt_sums, ref.tilt_sums, atol=1e-6 * np.abs(ref.tilt_sums).max())
    assert not fused.maps[0].any()
    # Recomputing only some tilts at a moved geometry (the recentring after the global shift search) gives those
    # tilts' maps of a full computation at that geometry and keeps the other tilts' maps, on both paths.
    moved = g.with_projection_matrices(g.projection_matrices() + np.array([[0, 0, 0, 3.0], [0, 0, 0, -2.0], [0] * 4,
                                                                           [0] * 4]))
    subset = np.array([2, 7, 30])
    full_moved = compute_cc_maps(stack, moved, *args[2:], fused=True)
    for is_fused in (True, False):
        base = compute_cc_maps(*args, fused=is_fused)
        kept = base.maps.copy()
        part = compute_cc_maps(stack, moved, *args[2:], fused=is_fused, tilts=subset, update=base)
        others = np.setdiff1d(np.arange(g.n_tilts), subset)
        np.testing.assert_array_equal(part.maps[:, others], kept[:, others])
        np.testing.assert_allclose(part.maps[:, subset], full_moved.maps[:, subset],
                                   atol=1e-6 * np.abs(full_moved.maps).max())
        np.testing.assert_allclose(part.tilt_sums[subset], full_moved.tilt_sums[subset],
                                   atol=1e-6 * np.abs(full_moved.tilt_sums).max())
        np.testing.assert_allclose(part.centres_px[:, subset], full_moved.centres_px[:, subset])
        assert np.abs(part.maps[:, subset] - kept[:, subset]).max() > 0.1 * np.abs(kept).max()


def test_recovers_tilt_shifts_far_beyond_r(tmp_path):
    """Tilt shifts of 6 px RMS (up to ~19 px) with --r 6: RELION's local search cannot reach them; the
    global per-tilt search must bring every tilt home."""
    from tomo_refine_plugin.compute.simulate.options import SimulationOptions
    from tomo_refine_plugin.compute.simulate.program import simulate_dataset

    data = tmp_path / "data"
    simulate_dataset(data, SimulationOptions(seed=7, snr=2.0, n_particles=24, box_px=48, image_size_px=(256, 256),
                                             angle_err_deg=(0.3, 0.3, 0.3), shift_err_px=6.0, position_err_px=1.5),
                     log=lambda *a: None)
    assert _errors((data / "tomograms.star", data / "particles.star"), data)["max_px"] > 15
    r = run_align(AlignOptions(o=str(tmp_path / "o"), b=48, r=6, i=str(data / "optimisation_set.star"), j=2),
                  log=lambda *a: None)
    e = _errors((r.tomograms_star, r.particles_star), data)
    assert e["rms_px"] <= 0.1 and e["max_px"] <= 0.5


def test_shift_only(golden_dir, tmp_path):
    src = golden_dir / "align"
    out = tmp_path / "so"
    with pytest.raises(InputError, match="only applies with --shift_only"):
        run_align(AlignOptions(o=str(out), b=48, r=10, i=str(src / "optimisation_set.star"),
                               shift_only_by_particles=True), log=lambda *a: None)
    r = run_align(AlignOptions(o=str(out), b=48, r=10, i=str(src / "optimisation_set.star"), shift_only=True,
                               diag=True), log=lambda *a: None)
    assert r.particles_star is None and not (out / "particles.star").exists()
    with mrcfile.open(out / "diag_TS_01_frq_weight.mrc") as m:  # --diag: per-tilt frequency weights
        assert m.data.shape == (31, 48, 25) and m.data.max() > 0 and m.data[:, 0, 24].max() == 0
    oset = read_star(r.optimisation_set_star)[""]
    assert oset["rlnTomoParticlesFile"] == "particles.star"  # the input particles, as RELION
    e = _errors((r.tomograms_star, src / "particles.star"), src)
    assert e["rms_px"] < 2.6  # 3.72 before; angles and positions are not refined in this mode
    before = read_star(src / "tilt_series" / "TS_01.star")["TS_01"]
    after = read_star(out / "tilt_series" / "TS_01.star")["TS_01"]
    for col in ("rlnTomoXTilt", "rlnTomoYTilt", "rlnTomoZRot"):
        np.testing.assert_allclose(after[col], before[col], atol=1e-9)
