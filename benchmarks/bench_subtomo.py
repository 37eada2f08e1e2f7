"""Benchmark ``tomo-refine subtomo`` against RELION 5.0.1's numbers on the same problem size.

Problem: 1 tomogram, 41 tilts (±60°, 3° step), 768×768 px at 4 Å, 150 particles (box-64 phantom),
true geometry. Runs ``subtomo --b 96 --crop 64 --j 2`` (3D pseudo-subtomograms) and the same with
``--stack2d``. RELION 5.0.1 (CPU, 2 threads): 11.8 s (3D), 7.1 s (2D), 315 MB peak RSS.

Each run is a fresh ``python -m tomo_refine_plugin subtomo ...`` process, timed from outside as a user
would see it (interpreter start-up, imports and teardown included); CPU time and peak RSS come from
``wait4`` on that process. Prints, per mode: wall time and particle-tilts/s of warm runs (numba cache
filled; median of ``--repeats``), CPU time, peak RSS, and the numba compile time (a cold run with an
empty cache minus the warm run).

Usage: ``python benchmarks/bench_subtomo.py [--workdir DIR] [--j 2] [--repeats 3]``
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RELION = {"3d_wall_s": 11.8, "2d_wall_s": 7.1, "rss_mb": 315.0}
N_PARTICLES, N_TILTS = 150, 41

def _simulate(data: Path) -> None:
    from tomo_refine_plugin.compute.simulate.options import SimulationOptions
    from tomo_refine_plugin.compute.simulate.program import simulate_dataset

    if (data / "optimisation_set.star").exists():
        return
    opts = SimulationOptions(n_tilts=N_TILTS, tilt_step_deg=3.0, image_size_px=(768, 768), tomo_depth_px=192,
                             pixel_size_angst=4.0, box_px=64, n_particles=N_PARTICLES, snr=1.0, seed=12)
    t0 = time.perf_counter()
    simulate_dataset(data, opts, log=lambda *a: None)
    print(f"simulated in {time.perf_counter() - t0:.1f} s -> {data}")


def _run(data: Path, out: Path, j: int, cache: Path, extra=()) -> dict:
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache))
    cmd = [sys.executable, "-m", "tomo_refine_plugin", "subtomo", "--i", str(data / "truth" / "optimisation_set.star"),
           "--b", "96", "--crop", "64", "--j", str(j), "--o", str(out), *extra]
    if out.exists():
        shutil.rmtree(out)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=data, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        sys.stderr.write(output.decode(errors="replace"))
        raise SystemExit(f"subtomo failed (exit {proc.returncode})")
    return {"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime, "rss_mb": usage.ru_maxrss / 1024}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", default=str(Path(tempfile.gettempdir()) / "tomo_refine_bench_subtomo"))
    ap.add_argument("--j", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    work = Path(args.workdir).absolute()
    data = work / "data"
    _simulate(data)
    cache = work / "numba_cache"
    if cache.exists():
        shutil.rmtree(cache)
    for mode, extra, relion_wall in (("3D", (), RELION["3d_wall_s"]), ("2D", ("--stack2d",), RELION["2d_wall_s"])):
        cold = _run(data, work / f"out_{mode}", args.j, cache, extra)
        warm = sorted((_run(data, work / f"out_{mode}", args.j, cache, extra) for _ in range(args.repeats)),
                      key=lambda r: r["wall_s"])
        med = warm[len(warm) // 2]
        rate = N_PARTICLES * N_TILTS / med["wall_s"]
        print(f"[{mode}] wall (warm, median of {args.repeats})  {med['wall_s']:.2f} s  (RELION {relion_wall} s, "
              f"speed-up {relion_wall / med['wall_s']:.2f}x), {rate:.0f} particle-tilts/s, "
              f"CPU {med['cpu_s']:.1f} s (load average {os.getloadavg()[0]:.1f})")
        print(f"[{mode}] peak RSS                    {max(r['rss_mb'] for r in warm):.0f} MB  "
              f"(RELION {RELION['rss_mb']:.0f} MB)")
        print(f"[{mode}] numba compile (cold - warm) {max(cold['wall_s'] - med['wall_s'], 0):.1f} s  "
              f"(cold run {cold['wall_s']:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
