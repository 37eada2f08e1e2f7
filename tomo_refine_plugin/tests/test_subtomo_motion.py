"""subtomo with particle motion on simulated data (no deformations): extracting along the true
trajectories gives back the pseudo-subtomograms of the same particles simulated standing still."""
from __future__ import annotations

import mrcfile
import numpy as np

from tomo_refine_plugin.compute.simulate.options import SimulationOptions
from tomo_refine_plugin.compute.simulate.program import simulate_dataset
from tomo_refine_plugin.compute.subtomo import SubtomoOptions, run_subtomo


def _ncc(a, b):
    a = a.ravel() - a.mean()
    b = b.ravel() - b.mean()
    return float(a @ b / np.sqrt((a @ a) * (b @ b)))


def _volumes(out, n):
    vols = []
    for k in range(1, n + 1):
        with mrcfile.open(out / f"Subtomograms/TS_01/{k}_data.mrc") as m:
            vols.append(np.array(m.data, np.float64))
    return vols


def test_extraction_follows_the_trajectories(tmp_path, monkeypatch):
    n = 20
    common = dict(n_tilts=31, tilt_step_deg=4.0, image_size_px=(160, 160), tomo_depth_px=48, box_px=32,
                  n_particles=n, snr=float("inf"), seed=3)
    # same seed: same particles and geometry; only the drift (1.5 Å per tilt step) differs
    simulate_dataset(tmp_path / "moving", SimulationOptions(motion_angst_per_step=1.5, **common), log=lambda *_: None)
    simulate_dataset(tmp_path / "still", SimulationOptions(motion_angst_per_step=0.0, **common), log=lambda *_: None)
    runs = {}
    for name, folder, mot in (("still", "still", None), ("with_mot", "moving", "truth/motion.star"),
                              ("without_mot", "moving", None)):
        monkeypatch.chdir(tmp_path / folder)
        out = tmp_path / f"out_{name}"
        run_subtomo(SubtomoOptions(o=str(out), b=32, p="truth/particles.star", t="truth/tomograms.star", mot=mot,
                                   j=2), log=lambda *_: None)
        runs[name] = _volumes(out, n)
    with_mot = [_ncc(a, b) for a, b in zip(runs["with_mot"], runs["still"])]
    without = [_ncc(a, b) for a, b in zip(runs["without_mot"], runs["still"])]
    # measured (analytic-projection simulator, e784bb6): with motion min 0.937 / mean 0.981 (neighbours
    # move too; defocus follows the static position as in RELION); without: mean 0.79, min 0.52
    assert min(with_mot) > 0.92 and np.mean(with_mot) > 0.975, with_mot
    assert np.mean(without) < 0.9 and np.mean(with_mot) > np.mean(without) + 0.1, without
