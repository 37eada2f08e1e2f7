"""Cramér–Rao bound of the reprojection error for a simulated align dataset: how well *any* unbiased estimator
of the per-tilt 5-DOF projections and the particle positions could do on it.

Per (particle, tilt) observation, the Fisher information of its 2D position is ``Σ_k (2πk)²|a·Pred(k)|²/σ²``
(white noise σ² from ``truth/errors.json``; ``Pred`` = slice × CTF × dose at the true geometry, ``a`` the
least-squares contrast between data and prediction). The joint information of all parameters (5 per tilt,
3 per particle) follows from the Jacobian of every projected position; its pseudo-inverse (the gauge of a
rigid motion of the whole frame is unobservable, and so is not in the metric) gives the covariance of each
projected position, whose mean trace is the bound on the mean squared reprojection error.

Usage: ``python benchmarks/crb_align.py DATASET_DIR --b 96`` (e.g. the benchmark's
``$TMPDIR/tomo_refine_bench_align/data``).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def fisher_per_observation(data: Path, box: int):
    from tomo_refine_plugin.compute.align.ccmaps import observed_positions, predicted_spectra
    from tomo_refine_plugin.compute.align.program import AlignOptions, _load_inputs
    from tomo_refine_plugin.compute.dose import dose_weights_rfft_2d
    from tomo_refine_plugin.compute.fourier.extract import align_observation_rfft_2d
    from tomo_refine_plugin.compute.fourier.shells import rfft_multiplicity_2d
    from tomo_refine_plugin.compute.geometry import particle_positions_px
    from tomo_refine_plugin.compute.io.tomograms import load_tilt_series

    inputs = _load_inputs(AlignOptions(o="unused", b=box, i=str(data / "truth" / "optimisation_set.star"),
                                       ref1=str(data / "ref_half1.mrc"), ref2=str(data / "ref_half2.mrc")))
    tset, pset = inputs.tset, inputs.pset
    name = tset.names()[0]
    rows = pset.for_tomogram(name)
    g, optics = tset.geometry(name), tset.optics(name)
    pix = g.pixel_size_angst
    pos = particle_positions_px(pset.centred_angst(rows, g.tomo_size_px, pix), pix, g.tomo_size_px,
                                pset.origins_angst(rows))
    mats, half = pset.particle_matrices(rows), rows["rlnRandomSubset"].to_numpy(int) - 1
    stack = load_tilt_series(tset, name)
    proj = g.projection_matrices()
    uv, visible, defocus = observed_positions(g, pos, box)
    dose = dose_weights_rfft_2d(box, pix, optics.pre_exposure_e_per_angst2, optics.bfactor_per_dose_angst2)
    support = np.ones_like(dose, bool)
    kx = np.fft.rfftfreq(box)[None, :]
    ky = np.fft.fftfreq(box)[:, None]
    mult = rfft_multiplicity_2d(box, box)
    info = np.zeros((len(pos), g.n_tilts, 2))
    num = den = 0.0
    for f in range(g.n_tilts):
        sel = np.nonzero(visible[:, f])[0]
        if not sel.size:
            continue
        pred = predicted_spectra(inputs.reference.halves, half[sel],
                                 np.einsum("ij,pjk->pik", proj[f, :3, :3], mats[sel]), np.full(sel.size, f),
                                 defocus[sel, f], optics, pix, dose, support)
        obs = align_observation_rfft_2d(stack[f:f + 1], uv[sel, f][:, None], box)[:, 0]
        num += float(np.sum(mult * (obs * np.conj(pred)).real))
        den += float(np.sum(mult * np.abs(pred) ** 2))
        power = mult * np.abs(pred) ** 2
        info[sel, f, 0] = np.sum((2 * np.pi * kx) ** 2 * power, axis=(1, 2))
        info[sel, f, 1] = np.sum((2 * np.pi * ky) ** 2 * power, axis=(1, 2))
    sigma = json.loads((data / "truth" / "errors.json").read_text())["noise_sigma"]
    return info * (num / den) ** 2 / sigma**2, visible, proj, pos, g.centre_px


def reprojection_bound(info, visible, proj, pos, pivot) -> np.ndarray:
    """Bound on the squared reprojection error of every visible (particle, tilt), px²."""
    n_p, n_f = visible.shape
    n = 5 * n_f + 3 * n_p
    gens = [np.array([[0, 0, 0], [0, 0, -1], [0, 1, 0.0]]), np.array([[0, 0, 1], [0, 0, 0], [-1, 0, 0.0]]),
            np.array([[0, -1, 0], [1, 0, 0], [0, 0, 0.0]])]
    fisher = np.zeros((n, n))
    jac = {}
    for p, f in zip(*np.nonzero(visible)):
        rot = proj[f, :3, :3]
        y = rot @ (pos[p] - pivot)
        j = np.zeros((2, n))
        for i, e in enumerate(gens):  # small rotations of the camera frame about the pivot
            j[:, 5 * f + i] = (e @ y)[:2]
        j[:, 5 * f + 3:5 * f + 5] = np.eye(2)
        j[:, 5 * n_f + 3 * p:5 * n_f + 3 * p + 3] = rot[:2]
        idx = np.r_[5 * f:5 * f + 5, 5 * n_f + 3 * p:5 * n_f + 3 * p + 3]
        jj = j[:, idx]
        fisher[np.ix_(idx, idx)] += jj.T @ np.diag(info[p, f]) @ jj
        jac[p, f] = j
    cov = np.linalg.pinv(fisher, rcond=1e-10, hermitian=True)
    return np.array([np.trace(j @ cov @ j.T) for j in jac.values()])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", help="dataset folder written by tomo-refine simulate (with truth/)")
    ap.add_argument("--b", type=int, default=96, help="alignment box (px)")
    args = ap.parse_args(argv)
    bound = reprojection_bound(*fisher_per_observation(Path(args.data), args.b))
    print(f"Cramér–Rao bound of the reprojection error: RMS {np.sqrt(bound.mean()):.4f} px, "
          f"median {np.sqrt(np.median(bound)):.4f} px ({bound.size} visible particle-tilts)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
