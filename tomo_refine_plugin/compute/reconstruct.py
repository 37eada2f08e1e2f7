"""``tomo-refine reconstruct``: half maps from particles (``relion_tomo_reconstruct_particle``).

Every kept particle's tilt images go through the subtomo 2D chain (window, binning, sub-pixel centring,
sign·CTF·dose, circle crop; :mod:`.subtomo.pipeline`) and are inserted into the Fourier grid of its
half set (``rlnRandomSubset``) in the *particle* frame (``A_sub·A_part``), so all particles add up in
one map. The map is the Wiener-like division ``D / (C + 1/SNR)`` with ``--SNR > 0``, else RELION's
heuristic ``D / max(C, 0.001·radial mean of C)``.

Outputs (``<o>``): ``half1.mrc``, ``half2.mrc``, ``merged.mrc`` (real space, pixel ``bin·pix``,
``--crop`` centre-cropped if given), ``data_half{1,2}.mrc`` (unweighted backprojections),
``weight_half{1,2}.mrc`` (CTF², full centred) and ``fsc.star`` (unmasked half-map FSC).

Deliberate differences from RELION (docs/DEVIATIONS.md): particle visibility uses ``bin·box/2`` like
subtomo (RELION uses ``box/2``, PR #1305) and ``rlnTomoVisibleFrames`` is honoured (PR #1344).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .ctf import defocus_offsets_angst
from .errors import InputError
from .fourier.insert import (
    backproject_slices_rfft_3d,
    half_grid_to_full_centred,
    half_grid_to_real_centred,
    slice_rows,
)
from .fourier.shells import fourier_shell_correlation, radius_rfft_3d
from .io.fsc import write_fsc
from .io.mrc import write_mrc
from .io.note import write_note
from .io.tomograms import TiltSeriesRows
from .subtomo.pipeline import ExtractionSpec, tilt_spectra, tomogram_tables, weight_spectra
from .subtomo.program import (
    SubtomoOptions,
    _check_no_deformations,
    _optics_for_group,
    _read_inputs,
    numba_threads,
    plan_particles,
)

__all__ = ["ReconstructOptions", "ReconstructResult", "run_reconstruct", "wiener_divide", "fourier_shell_correlation",
           "taper_sphere", "gridding_correct"]


@dataclass(frozen=True)
class ReconstructOptions:
    """Options of ``tomo-refine reconstruct`` (RELION's ``relion_tomo_reconstruct_particle`` flag names)."""

    o: str
    b: int
    i: str | None = None
    p: str | None = None
    t: str | None = None
    mot: str | None = None
    crop: int = -1
    bin: float = 1.0
    SNR: float = -1.0
    no_ctf: bool = False
    no_circle_crop: bool = False
    cutoff_fract: float = 0.01
    taper: float = 10.0
    j: int = 6


@dataclass(frozen=True)
class ReconstructResult:
    half1: Path
    half2: Path
    merged: Path
    fsc_star: Path
    fsc: np.ndarray  # (n_shells,)
    resolution_angst_at_0143: float
    n_particles: tuple  # (half 1, half 2)


def wiener_divide(data, ctf, snr: float = -1.0) -> np.ndarray:
    """``D / (C + 1/SNR)`` (SNR > 0) or ``D / max(C, 0.001·⟨C⟩_shell)`` with 0 beyond the last shell.

    Parameters
    ----------
    data
        complex ``(s, s, s//2+1)`` summed inserted data.
    ctf
        float ``(s, s, s//2+1)`` summed CTF² weights.

    Returns
    -------
    divided
        complex128 ``(s, s, s//2+1)``.
    """
    box = data.shape[0]
    if snr > 0:
        return data / (ctf + 1.0 / snr)
    shell = np.round(radius_rfft_3d(box)).astype(np.int64)
    n_shells = box // 2 + 1
    inside = shell < n_shells
    radial = np.bincount(shell[inside], weights=ctf[inside], minlength=n_shells) / np.maximum(
        np.bincount(shell[inside], minlength=n_shells), 1)
    floor = 0.001 * radial[np.minimum(shell, n_shells - 1)]
    denom = np.maximum(ctf, floor)
    ok = inside & (denom > 0)
    return np.where(ok, data / np.where(ok, denom, 1.0), 0)


def gridding_correct(volume) -> np.ndarray:
    """Divide a centred real-space ``(s, s, s)`` backprojection by ``sinc²(r/s)`` (``r`` from voxel s/2): undoes
    the attenuation of linear interpolation in Fourier space (RELION's data_half maps carry it)."""
    box = volume.shape[-1]
    c = box // 2
    z, y, x = np.mgrid[0:box, 0:box, 0:box]
    r = np.sqrt((x - c) ** 2 + (y - c) ** 2 + (z - c) ** 2)
    return (volume / np.sinc(r / box) ** 2).astype(np.float32)


def taper_sphere(vol, width_px: float) -> np.ndarray:
    """Cosine taper to zero at radius ``s/2`` over ``width_px``, after subtracting the mean inside it."""
    box = vol.shape[-1]
    c = box // 2
    z, y, x = np.mgrid[0:box, 0:box, 0:box]
    r = np.sqrt((x - c) ** 2 + (y - c) ** 2 + (z - c) ** 2)
    radius = box / 2.0
    mask = np.where(r < radius - width_px, 1.0,
                    np.where(r < radius, 0.5 + 0.5 * np.cos(np.pi * (r - radius + width_px) / width_px), 0.0))
    mean = float((vol * mask).sum() / mask.sum())
    return ((vol - mean) * mask).astype(np.float32)


def _centre_crop(vol, crop: int):
    b = (vol.shape[-1] - crop) // 2
    return vol[b : b + crop, b : b + crop, b : b + crop]


def run_reconstruct(opts: ReconstructOptions, log=print, command: str | None = None) -> ReconstructResult:
    """Reconstruct half maps and their FSC from a particle set (``relion_tomo_reconstruct_particle``).

    Raises
    ------
    InputError
        Bad options or inputs; particles without ``rlnRandomSubset`` 1/2.
    """
    with numba_threads(opts.j):
        return _run_reconstruct(opts, log, command)


def _run_reconstruct(opts: ReconstructOptions, log, command: str | None) -> ReconstructResult:
    sub_opts = SubtomoOptions(o=opts.o, b=opts.b, i=opts.i, p=opts.p, t=opts.t, mot=opts.mot, crop=-1, bin=opts.bin,
                              no_ctf=opts.no_ctf, no_circle_crop=opts.no_circle_crop, cutoff_fract=opts.cutoff_fract,
                              j=opts.j)
    if opts.b <= 0 or opts.b % 2:
        raise InputError(f"--b must be a positive even number, got {opts.b}", field="--b")
    if opts.crop > opts.b:
        raise InputError(f"--crop {opts.crop} is larger than --b {opts.b}", field="--crop", fix="use --crop <= --b")
    oset, tset, pset, traj = _read_inputs(sub_opts)
    if "rlnRandomSubset" not in pset.particles.columns:
        raise InputError("rlnRandomSubset is missing: half sets are needed", path=pset.path,
                         field="data_particles/rlnRandomSubset", fix="assign particles to subsets 1 and 2")
    subsets = pset.particles["rlnRandomSubset"].to_numpy(np.int64)
    if not np.isin(subsets, (1, 2)).all():
        raise InputError("rlnRandomSubset must be 1 or 2", path=pset.path, field="data_particles/rlnRandomSubset")
    for name in pset.tomo_names():
        _check_no_deformations(tset, name)
    plans = plan_particles(sub_opts, tset, pset, traj)
    s2 = opts.b
    n_thr = max(1, int(opts.j))
    shape = (2 * n_thr, s2, s2, s2 // 2 + 1)
    acc = (np.zeros(shape, np.complex128), np.zeros(shape, np.float64), np.zeros(shape, np.float64))
    n_half = [0, 0]
    pixb = None
    for plan in plans:
        t0 = time.perf_counter()
        geo = tset.geometry(plan.name)
        spec = ExtractionSpec(box_2d=s2, box_3d=s2, binning=float(opts.bin), pixel_size_angst=geo.pixel_size_angst,
                              do_ctf=not opts.no_ctf, circle_crop=False, circle_precrop=not opts.no_circle_crop,
                              cutoff_fract=opts.cutoff_fract)
        if pixb is None:
            pixb = spec.binned_pixel_size_angst
        elif abs(pixb - spec.binned_pixel_size_angst) > 1e-3:
            raise InputError(f"tomogram {plan.name} has another pixel size; one map needs one pixel size",
                             path=tset.path, field="rlnTomoTiltSeriesPixelSize")
        w_img, h_img = geo.image_size_px
        if spec.window_px > min(w_img, h_img):
            raise InputError(f"the extraction window ({spec.window_px} px) is larger than the tilt images of "
                             f"{plan.name}", path=tset.path, field="--b")
        idx = np.flatnonzero(plan.kept)
        if not len(idx):
            continue
        # streamed (row bands per chunk): the tilt series is never held whole
        with TiltSeriesRows(tset, plan.name) as stack:
            tables = tomogram_tables(geo.projection_matrices(), tset.optics(plan.name), spec)
            # --cutoff_fract: 2D frequencies whose dose weight is at or below it are not backprojected
            keep_2d = (tables.dose > spec.cutoff_fract).astype(np.float32) if spec.cutoff_fract > 0 else None
            dz = defocus_offsets_angst(geo, plan.positions_px)
            groups = pset.optics_groups(plan.rows)
            mats = pset.particle_matrices(plan.rows)
            half = plan.rows["rlnRandomSubset"].to_numpy(np.int64) - 1
            chunk = 4 * n_thr
            for group in np.unique(groups[idx]):
                optics = _optics_for_group(tset, pset, plan.name, int(group))
                sel = idx[groups[idx] == group]
                for start in range(0, len(sel), chunk):
                    ids = sel[start : start + chunk]
                    vis = plan.visible[ids]
                    sp = tilt_spectra(stack, plan.uv[ids], vis, spec, workers=opts.j)
                    x, w = weight_spectra(sp, spec, optics, dz[ids], tables.dose, workers=opts.j)
                    rows = slice_rows(tables.frame_rotations, mats[ids], 1.0)
                    target = half[ids] * n_thr + np.arange(len(ids)) % n_thr
                    if keep_2d is not None:
                        x *= keep_2d
                        w *= keep_2d
                    backproject_slices_rfft_3d(x, w, rows, vis, s2, target=target, n_acc=2 * n_thr, out=acc)
        for h in (0, 1):
            n_half[h] += int((half[idx] == h).sum())
        log(f"{plan.name}: {len(idx)} particles inserted ({int((~plan.kept).sum())} not visible enough), "
            f"{time.perf_counter() - t0:.1f} s")
    if min(n_half) == 0:
        raise InputError(f"half sets have {n_half[0]} and {n_half[1]} particles; both need some",
                         path=pset.path, field="data_particles/rlnRandomSubset")
    data = [acc[0][h * n_thr:(h + 1) * n_thr].sum(0) for h in (0, 1)]
    ctf = [acc[1][h * n_thr:(h + 1) * n_thr].sum(0) for h in (0, 1)]
    out = Path(opts.o)
    out.mkdir(parents=True, exist_ok=True)
    # data_half*.mrc carry the sinc² gridding correction (as RELION's do), but the maps divide the raw
    # backprojection: dividing the corrected one amplifies the corners and, after the CTF² division, the
    # noise explodes (tested against the golden recon: RELION's half maps are the raw division, tapered)
    for h in (0, 1):
        write_mrc(out / f"data_half{h + 1}.mrc", gridding_correct(half_grid_to_real_centred(data[h], s2)), pixb)
        write_mrc(out / f"weight_half{h + 1}.mrc", half_grid_to_full_centred(ctf[h]), pixb)
    maps = [taper_sphere(half_grid_to_real_centred(wiener_divide(data[h], ctf[h], opts.SNR), s2), opts.taper)
            for h in (0, 1)]
    merged = taper_sphere(half_grid_to_real_centred(wiener_divide(data[0] + data[1], ctf[0] + ctf[1], opts.SNR), s2),
                          opts.taper)
    fsc = fourier_shell_correlation(maps[0], maps[1])
    crop = opts.crop if opts.crop > 0 else s2
    outputs = []
    for name, vol in (("half1", maps[0]), ("half2", maps[1]), ("merged", merged)):
        if crop < s2:
            vol = taper_sphere(_centre_crop(vol, crop), opts.taper)  # taper again at the new edge
        path = out / f"{name}.mrc"
        write_mrc(path, vol, pixb)
        outputs.append(path)
    shells = np.arange(len(fsc))
    res = shells / (s2 * pixb)
    write_fsc(out / "fsc.star", shells, res, fsc)
    below = np.flatnonzero((fsc < 0.143) & (shells > 0))
    res_143 = float(1.0 / res[below[0] - 1]) if len(below) and below[0] > 1 else (
        float(2 * pixb) if not len(below) else float("inf"))
    write_note(out, "reconstruct", opts, command)
    log("shell  resolution(A)  FSC(half1, half2)")
    for k in range(1, len(fsc)):
        log(f"{k:5d}  {1.0 / res[k]:13.2f}  {fsc[k]:8.4f}")
    log(f"FSC(half1, half2) = 0.143 at {res_143:.2f} A; particles per half {n_half[0]} / {n_half[1]}")
    return ReconstructResult(outputs[0], outputs[1], outputs[2], out / "fsc.star", fsc, res_143, tuple(n_half))
