"""Every STAR file of the golden datasets (real RELION 5.0.1 inputs and outputs) through the readers."""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from tomo_refine_plugin.compute.io import (
    check_optics_match,
    check_particles_against_tomograms,
    read_optimisation_set,
    read_particle_set,
    read_star,
    read_tomogram_set,
    read_trajectories,
    write_star,
)


def test_every_golden_star_file_round_trips_exactly(golden_dir, tmp_path):
    files = sorted(golden_dir.rglob("*.star"))
    assert len(files) >= 40
    for path in files:
        blocks = read_star(path)
        write_star(blocks, tmp_path / "copy.star")
        again = read_star(tmp_path / "copy.star")
        assert list(blocks) == list(again), path
        for name, block in blocks.items():
            if isinstance(block, dict):
                assert block == again[name], (path, name)
            else:
                pd.testing.assert_frame_equal(block, again[name], check_exact=True, obj=f"{path}:{name}")


def optimisation_sets(root):
    return sorted(p for p in root.rglob("optimisation_set.star"))


@pytest.mark.parametrize("dataset", ["align", "align_motion_deform", "subtomo", "subtomo_motion_deform"])
def test_every_optimisation_set_reads_consistently(golden_dir, dataset, monkeypatch):
    root = golden_dir / dataset
    monkeypatch.chdir(root)  # RELION's paths are relative to the dataset (project) folder
    for path in optimisation_sets(root):
        oset = read_optimisation_set(path.relative_to(root))
        assert oset.particles, path
        pset = read_particle_set(oset.particles)
        assert len(pset.particles) > 0
        if not oset.tomograms:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # RELION 5 files: no legacy conversion warnings
            tset = read_tomogram_set(oset.tomograms)
            check_particles_against_tomograms(pset, tset)
            check_optics_match(pset, tset)
            for name in tset.names():
                g = tset.geometry(name)
                o = tset.optics(name)
                assert g.n_tilts == o.n_tilts == 31
                assert np.all(np.isfinite(g.projection_matrices()))
                rows = pset.for_tomogram(name)
                c = pset.centred_angst(rows, g.tomo_size_px, g.pixel_size_angst)
                assert np.all(np.abs(c) < np.array(g.tomo_size_px) * g.pixel_size_angst / 2 + 1e-6)
        if oset.trajectories:
            traj = read_trajectories(oset.trajectories)
            shifts = traj.for_particles(pset.particle_names(), 31)
            assert shifts.shape == (len(pset.particles), 31, 3)
            assert set(traj.names()) >= set(pset.particle_names())
