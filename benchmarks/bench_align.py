"""Benchmark ``tomo-refine align`` against RELION 5.0.1's numbers on the same problem size.

Problem: 1 tomogram, 41 tilts (±60°, 3° step), 768×768 px at 4 Å, 120 particles, box-64 reference, SNR 0.5;
half maps = the truth map, every particle's 96-px box inside every tilt and a particle with fine detail (as the
golden data); injected errors 0.3° per tilt angle, 2 px per tilt shift, 1.5 px per particle. Run:
``align --b 96 --r 10 --j 2``. RELION 5.0.1 (CPU, 2 threads): 10.4 s wall, 340 MB peak RSS, RMS 0.044 px.

Prints the median wall time, CPU time and peak RSS of the warm runs (numba cache filled), the numba compile time (a cold run
with an empty cache minus the warm run), and the reprojection error before/after.

Usage: ``python benchmarks/bench_align.py [--workdir DIR] [--j 2] [--seeds 12 13 14] [--noise_draws 8]``
(``--seeds``: the same problem drawn again with other seeds, for the accuracy's spread between dataset instances;
``--noise_draws``: the benchmark instance with N other noise draws, for the estimator's expected error on it and
its Cramér–Rao bound, ``crb_align.py``).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RELION = {"wall_s": 10.4, "rss_mb": 340.0, "rms_px": 0.044}

RUNNER = r"""
import resource, sys, time
t0 = time.perf_counter()
from tomo_refine_plugin.cli import main
rc = main(sys.argv[1:])
wall = time.perf_counter() - t0
ru = resource.getrusage(resource.RUSAGE_SELF)
print(f"BENCH wall_s={wall:.3f} rss_mb={ru.ru_maxrss / 1024:.1f} cpu_s={ru.ru_utime + ru.ru_stime:.3f}")
sys.exit(rc)
"""


def _simulate(data: Path, seed: int = 11, noise_seed: int = -1) -> None:
    from dataclasses import asdict

    from tomo_refine_plugin.compute.simulate.options import SimulationOptions
    from tomo_refine_plugin.compute.simulate.program import simulate_dataset

    # The golden generator's kind of particle in physical units: 32 blobs of ~6-12 Å plus 160 of 4 Å (σ = 1 px
    # at 4 Å; the golden ones are 3.5-5.5 Å). The default 12 smooth blobs have ~100x less power beyond 10 Å,
    # which makes the CC peaks broad and every estimate noisier (RMS 0.066 instead of 0.056 px here).
    opts = SimulationOptions(n_tilts=41, tilt_step_deg=3.0, image_size_px=(768, 768), tomo_depth_px=192,
                             pixel_size_angst=4.0, box_px=64, n_particles=120, snr=0.5,
                             angle_err_deg=(0.3, 0.3, 0.3), shift_err_px=2.0, position_err_px=1.5, seed=seed,
                             ref_is_truth=True, inside_margin_px=48.0, n_blobs=32, n_fine_blobs=160,
                             fine_sigma_px=1.0, noise_seed=noise_seed)
    stamp = data / "bench_options.json"
    wanted = json.dumps(asdict(opts), sort_keys=True)
    if (data / "optimisation_set.star").exists() and stamp.exists() and stamp.read_text() == wanted:
        return
    if data.exists():
        shutil.rmtree(data)
    t0 = time.perf_counter()
    simulate_dataset(data, opts, log=lambda *a: None)
    stamp.write_text(wanted)
    print(f"simulated in {time.perf_counter() - t0:.1f} s -> {data}")


def _run(data: Path, out: Path, j: int, cache: Path) -> dict:
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache))
    cmd = [sys.executable, "-c", RUNNER, "align", "--i", str(data / "optimisation_set.star"), "--b", "96", "--r", "10",
           "--j", str(j), "--o", str(out)]
    if out.exists():
        shutil.rmtree(out)
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode:
        sys.stderr.write(proc.stdout + proc.stderr)
        raise SystemExit(f"align failed (exit {proc.returncode})")
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("BENCH")][-1]
    values = dict(kv.split("=") for kv in line.split()[1:])
    return {k: float(v) for k, v in values.items()}


def _errors(data: Path, tomograms, particles) -> dict:
    from tomo_refine_plugin.compute.metrics import reprojection_error

    return reprojection_error((tomograms, particles, None),
                              (data / "truth" / "tomograms.star", data / "truth" / "particles.star", None))


def _observable(data: Path, box_px: int, min_tilts: int = 3) -> np.ndarray:
    """Particles whose box lies inside the image in at least ``min_tilts`` tilts (the others carry no data and
    keep their input position, in RELION as here)."""
    from tomo_refine_plugin.compute.geometry import particle_positions_px, project_points, visible_in_frames
    from tomo_refine_plugin.compute.io.particles import read_particle_set
    from tomo_refine_plugin.compute.io.tomograms import read_tomogram_set

    tset, pset = read_tomogram_set(data / "tomograms.star"), read_particle_set(data / "particles.star")
    g = tset.geometry("TS_01")
    rows = pset.for_tomogram("TS_01")
    x = particle_positions_px(pset.centred_angst(rows, g.tomo_size_px, g.pixel_size_angst), g.pixel_size_angst,
                              g.tomo_size_px, pset.origins_angst(rows))
    uv = project_points(g.projection_matrices(), x)
    return visible_in_frames(uv, g.image_size_px, box_px / 2).sum(1) >= min_tilts


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", default=str(Path(tempfile.gettempdir()) / "tomo_refine_bench_align"))
    ap.add_argument("--j", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3, help="warm runs; the median (and the fastest) is reported")
    ap.add_argument("--seeds", type=int, nargs="*", default=[],
                    help="also report the reprojection error on these other instances of the dataset (accuracy only)")
    ap.add_argument("--noise_draws", type=int, default=0,
                    help="also align N other noise draws of the benchmark instance (same geometry, particles and "
                         "errors): the expected error of the estimator on it, against its Cramér–Rao bound")
    ap.add_argument("--simulate_only", type=int, nargs="+", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    work = Path(args.workdir)
    data = work / "data"

    def simulate(seed: int, noise_seed: int = -1) -> Path:
        # In a child process: Linux carries a process's peak RSS over fork+exec into ru_maxrss, so a simulation in
        # this process (~500 MB) would show up as the peak RSS of every align run started after it.
        where = data if (seed, noise_seed) == (11, -1) else (
            work / (f"data_seed{seed}" if noise_seed < 0 else f"data_noise{noise_seed}"))
        if args.simulate_only is not None:
            _simulate(where, seed, noise_seed)
        else:
            subprocess.run([sys.executable, __file__, "--workdir", str(work), "--simulate_only", str(seed),
                            str(noise_seed)], check=True)
        return where

    if args.simulate_only is not None:
        simulate(*args.simulate_only)
        return 0
    simulate(11)
    cold_cache = work / "numba_cold"
    if cold_cache.exists():
        shutil.rmtree(cold_cache)
    cold = _run(data, work / "out_cold", args.j, cold_cache)
    runs = [_run(data, work / "out", args.j, cold_cache) for _ in range(max(1, args.repeat))]
    runs.sort(key=lambda r: r["wall_s"])
    warm, fastest = runs[len(runs) // 2], runs[0]
    before = _errors(data, data / "tomograms.star", data / "particles.star")
    after = _errors(data, work / "out" / "tomograms.star", work / "out" / "particles.star")
    seen = _observable(data, 96)
    pp = after["per_particle_rms_px"]["TS_01"]
    print(f"load average          {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (timings are wall-clock)")
    print(f"wall time (warm)      {warm['wall_s']:.2f} s   median of {len(runs)} (RELION {RELION['wall_s']} s, "
          f"speed-up {RELION['wall_s'] / warm['wall_s']:.2f}x); CPU time {warm['cpu_s']:.2f} s; "
          f"fastest {fastest['wall_s']:.2f} s")
    print(f"peak RSS (warm)       {warm['rss_mb']:.0f} MB  (RELION {RELION['rss_mb']:.0f} MB)")
    print(f"numba compile (cold)  {max(cold['wall_s'] - warm['wall_s'], 0):.1f} s  (cold run {cold['wall_s']:.1f} s)")
    print(f"reprojection before   RMS {before['rms_px']:.3f} px, max {before['max_px']:.3f}")
    print(f"reprojection after    RMS {after['rms_px']:.4f} px, median {after['median_px']:.4f}, "
          f"max {after['max_px']:.3f} (RELION RMS {RELION['rms_px']})")
    print(f"  observable particles ({seen.sum()}/{seen.size} seen in >= 3 tilts): RMS "
          f"{float(np.sqrt((pp[seen] ** 2).mean())):.4f} px; unseen ones keep their input error "
          f"(RMS {float(np.sqrt((pp[~seen] ** 2).mean())) if (~seen).any() else 0:.3f} px)")
    if args.seeds:
        rms = [after["rms_px"]]
        for seed in args.seeds:
            d = simulate(seed)
            _run(d, work / "out_seed", args.j, cold_cache)
            e = _errors(d, work / "out_seed" / "tomograms.star", work / "out_seed" / "particles.star")
            b = _errors(d, d / "tomograms.star", d / "particles.star")
            rms.append(e["rms_px"])
            print(f"seed {seed:<4d}              RMS {b['rms_px']:.3f} -> {e['rms_px']:.4f} px, median {e['median_px']:.4f}, "
                  f"max {e['max_px']:.3f}")
        print(f"over {len(rms)} instances      RMS mean {np.mean(rms):.4f} px, min {np.min(rms):.4f}, max {np.max(rms):.4f} "
              f"(RELION RMS {RELION['rms_px']} on its instance)")
    if args.noise_draws:
        # One instance's RMS is one draw of a random variable (its relative spread is several %): the estimator's
        # accuracy on the benchmark geometry is its RMS over noise draws, which the Cramér–Rao bound bounds.
        from crb_align import fisher_per_observation, reprojection_bound

        bound = float(np.sqrt(reprojection_bound(*fisher_per_observation(data, 96)).mean()))
        ms = []
        for k in range(1, args.noise_draws + 1):
            d = simulate(11, k)
            _run(d, work / "out_noise", args.j, cold_cache)
            e = _errors(d, work / "out_noise" / "tomograms.star", work / "out_noise" / "particles.star")
            ms.append(e["rms_px"] ** 2)
            print(f"noise draw {k:<3d}         RMS {e['rms_px']:.4f} px")
        print(f"over {len(ms)} noise draws     RMS {np.sqrt(np.mean(ms)):.4f} px (draws {np.sqrt(np.min(ms)):.4f}-"
              f"{np.sqrt(np.max(ms)):.4f}); Cramér–Rao bound {bound:.4f} px, efficiency "
              f"{bound / np.sqrt(np.mean(ms)):.3f} (RELION RMS {RELION['rms_px']} on its instance)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
