"""``tomo-refine demo``: simulate a small dataset with known errors, refine it, and show that it got better.

Steps: simulate (``DIR/data``) → reprojection error and half-map FSC of the perturbed input → ``align`` →
reprojection error after → ``subtomo`` (pseudo-subtomograms at the refined geometry) → ``reconstruct``
with the refined geometry → FSC after. Engine programs that are not installed are skipped with a note.
"""
from __future__ import annotations

import contextlib
import importlib
import os
import time
from pathlib import Path

import numpy as np

from ..compute.metrics import reprojection_error
from ..compute.simulate import SimulationOptions, simulate_dataset


def add_arguments(parser) -> None:
    parser.add_argument("--out", default="demo_out", help="output folder (default: demo_out)")
    parser.add_argument("--seed", type=int, default=1, help="simulation seed (default: 1)")
    parser.add_argument("--n_particles", type=int, default=30, help="particles (default: 30)")
    parser.add_argument("--j", type=int, default=max(1, min(os.cpu_count() or 1, 4)), help="threads")


def _optional(module: str, name: str):
    """The engine function ``module.name``, or None when that program is not part of this installation."""
    try:
        return getattr(importlib.import_module(f"tomo_refine_plugin.compute.{module}"), name)
    except (ImportError, AttributeError):
        print(f"demo: note: {module}.{name} is not available in this installation; skipping that step")
        return None


@contextlib.contextmanager
def _cwd(path: Path):
    # STAR paths are relative to the dataset folder, as in a RELION project: run every program from there.
    old = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def _resolution_at(fsc, threshold, box, pixel_size_angst):
    fsc = np.asarray(fsc)
    below = np.flatnonzero((fsc < threshold) & (np.arange(len(fsc)) > 0))
    shell = below[0] if below.size else len(fsc) - 1
    return box * pixel_size_angst / max(shell, 1)


def _truth_fsc(map_path, truth_path):
    from ..compute.io.mrc import read_mrc
    from ..compute.reconstruct import fourier_shell_correlation

    volume, _ = read_mrc(map_path)
    truth, _ = read_mrc(truth_path)
    return fourier_shell_correlation(volume.astype(np.float64), truth.astype(np.float64))


def run(args) -> int:
    out = Path(args.out).resolve()
    data = out / "data"
    t0 = time.perf_counter()
    options = SimulationOptions(n_particles=args.n_particles, angle_err_deg=(0.3, 0.3, 0.3), shift_err_px=2.0,
                                position_err_px=1.5, seed=args.seed)
    sim = simulate_dataset(data, options)
    box, pix = options.box_px, options.pixel_size_angst
    truth = ("truth/tomograms.star", "truth/particles.star", None)
    rows = []

    def report(stage, estimate, recon):
        err = reprojection_error(estimate, truth)
        line = f"{stage:<7} reprojection error RMS {err['rms_px']:.3f} px  median {err['median_px']:.3f}  " \
               f"max {err['max_px']:.3f}"
        if recon is not None:
            fsc_truth = _truth_fsc(recon.merged, "truth/map.mrc")
            line += (f"   half-map FSC 0.143: {recon.resolution_angst_at_0143:.1f} A   map vs truth FSC 0.5: "
                     f"{_resolution_at(fsc_truth, 0.5, box, pix):.1f} A")
        rows.append(line)
        print(f"demo: {line}")

    run_align = _optional("align.program", "run_align")
    run_subtomo = _optional("subtomo.program", "run_subtomo")
    run_reconstruct = _optional("reconstruct", "run_reconstruct")
    with _cwd(data):
        recon_before = None
        if run_reconstruct is not None:
            from ..compute.reconstruct import ReconstructOptions

            recon_before = run_reconstruct(ReconstructOptions(o=str(out / "reconstruct_before"), b=box,
                                                              i="optimisation_set.star", j=args.j))
        report("before", ("tomograms.star", "particles.star", None), recon_before)
        if run_align is None:
            print("demo: alignment is not available, so there is no 'after'; the simulated dataset is in", data)
            return 0
        from ..compute.align.program import AlignOptions

        aligned = run_align(AlignOptions(o=str(out / "align"), b=box, i="optimisation_set.star", r=10, j=args.j))
        oset = str(aligned.optimisation_set_star)
        if run_subtomo is not None:
            from ..compute.subtomo.program import SubtomoOptions

            sub = run_subtomo(SubtomoOptions(o=str(out / "subtomo"), b=box, i=oset, j=args.j))
            print(f"demo: wrote {sub.n_written} pseudo-subtomograms to {out / 'subtomo'}")
        recon_after = None
        if run_reconstruct is not None:
            from ..compute.reconstruct import ReconstructOptions

            recon_after = run_reconstruct(ReconstructOptions(o=str(out / "reconstruct_after"), b=box, i=oset,
                                                             j=args.j))
        report("after", (str(aligned.tomograms_star), str(aligned.particles_star), None), recon_after)
    print(f"demo: done in {time.perf_counter() - t0:.0f} s ({sim.n_particles} particles, truth in {data / 'truth'})")
    for line in rows:
        print(line)
    if run_align is not None and aligned.report_dir is not None:
        for png in sorted(Path(aligned.report_dir).glob("*.png")):
            print(f"per-tilt report (which tilts moved, by how much): {png}")
    return 0
