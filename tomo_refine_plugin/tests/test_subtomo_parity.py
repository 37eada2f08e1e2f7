"""Parity with RELION 5.0.1's relion_tomo_subtomo on the golden ``subtomo`` dataset.

Each RELION run is re-run from the command in its ``note.txt`` (inside the dataset folder, output to
tmp): per-particle normalised cross-correlation of data and weights ≥ 0.999, same MRC shape, mode and
voxel size, same particles.star columns and kept particles.
"""
from __future__ import annotations

import shlex

import mrcfile
import numpy as np
import pytest

from tomo_refine_plugin.cli import build_parser
from tomo_refine_plugin.cli.subtomo import options_from_args
from tomo_refine_plugin.compute.io.star import read_star
from tomo_refine_plugin.compute.subtomo import run_subtomo

RUNS = ["subtomo3d", "subtomo3d_bin2", "subtomo3d_float16", "subtomo2d", "subtomo2d_nocrop"]


def _ncc(a, b):
    a = np.asarray(a, np.float64).ravel()
    b = np.asarray(b, np.float64).ravel()
    a = a - a.mean()
    b = b - b.mean()
    return float(a @ b / np.sqrt((a @ a) * (b @ b)))


def _relion_args(note_path):
    text = note_path.read_text()
    line = [ln for ln in text.splitlines() if ln.startswith("relion_tomo_subtomo")][0]
    return shlex.split(line)[1:]


def _run_like_relion(dataset, run_name, out_dir, monkeypatch):
    args = _relion_args(dataset / "relion" / run_name / "note.txt")
    o = args.index("--o")
    args[o + 1] = str(out_dir) + "/"
    monkeypatch.chdir(dataset)
    ns = build_parser().parse_args(["subtomo"] + args)
    return run_subtomo(options_from_args(ns), log=lambda *_: None)


def _mrc(path):
    with mrcfile.open(path, permissive=True) as m:
        return np.array(m.data), m.header.mode, tuple(float(v) for v in m.voxel_size.tolist())


@pytest.mark.parametrize("run_name", RUNS)
def test_subtomo_matches_relion(golden_dir, tmp_path, monkeypatch, run_name):
    dataset = golden_dir / "subtomo"
    ref_dir = dataset / "relion" / run_name
    result = _run_like_relion(dataset, run_name, tmp_path / "out", monkeypatch)
    ours = read_star(result.particles_star)
    ref = read_star(ref_dir / "particles.star")
    assert list(ours["optics"].columns) == list(ref["optics"].columns)
    assert list(ours["particles"].columns) == list(ref["particles"].columns)
    assert ours["general"]["rlnTomoSubTomosAre2DStacks"] == ref["general"]["rlnTomoSubTomosAre2DStacks"]
    for col in ("rlnCtfDataAreCtfPremultiplied", "rlnImageDimensionality", "rlnImageSize"):
        assert ours["optics"][col].tolist() == ref["optics"][col].tolist(), col
    np.testing.assert_allclose(ours["optics"]["rlnImagePixelSize"], ref["optics"]["rlnImagePixelSize"])
    assert ours["particles"]["rlnTomoParticleName"].tolist() == ref["particles"]["rlnTomoParticleName"].tolist()
    np.testing.assert_allclose(ours["particles"]["rlnCenteredCoordinateXAngst"],
                               ref["particles"]["rlnCenteredCoordinateXAngst"], atol=1e-4)
    if "rlnTomoVisibleFrames" in ref["particles"].columns:
        assert ours["particles"]["rlnTomoVisibleFrames"].tolist() == ref["particles"]["rlnTomoVisibleFrames"].tolist()
    rel = lambda p: p.split("Subtomograms/", 1)[1]  # noqa: E731
    worst = []
    for ours_name, ref_name in zip(ours["particles"]["rlnImageName"], ref["particles"]["rlnImageName"]):
        assert rel(ours_name) == rel(ref_name)
        a, mode_a, vox_a = _mrc(ours_name)
        b, mode_b, vox_b = _mrc(dataset / ref_name)
        assert a.shape == b.shape and mode_a == mode_b
        np.testing.assert_allclose(vox_a, vox_b, rtol=1e-5)
        worst.append(_ncc(a, b))
    if "rlnCtfImage" in ref["particles"].columns:
        for ours_name, ref_name in zip(ours["particles"]["rlnCtfImage"], ref["particles"]["rlnCtfImage"]):
            a, mode_a, vox_a = _mrc(ours_name)
            b, mode_b, vox_b = _mrc(dataset / ref_name)
            assert a.shape == b.shape and mode_a == mode_b
            np.testing.assert_allclose(vox_a, vox_b, rtol=1e-5)
            worst.append(_ncc(a, b))
            # weights are not normalised: compare the scale too
            assert np.abs(a.astype(np.float64) - b).max() <= 2e-3 * np.abs(b).max()
    assert min(worst) >= 0.999, min(worst)


def test_subtomo_outputs_optimisation_set_and_note(golden_dir, tmp_path, monkeypatch):
    dataset = golden_dir / "subtomo"
    out = tmp_path / "o"
    _run_like_relion(dataset, "subtomo3d", out, monkeypatch)
    oset = read_star(out / "optimisation_set.star")[""]
    assert oset["rlnTomoParticlesFile"] == f"{out}/particles.star"
    assert oset["rlnTomoTomogramsFile"] == "tomograms.star"
    assert "rlnTomoReferenceMap1File" not in oset  # RELION drops the reference entries
    assert (out / "note.txt").read_text().startswith("Command:")
