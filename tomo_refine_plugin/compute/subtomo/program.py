"""``tomo-refine subtomo``: a drop-in for ``relion_tomo_subtomo`` (RELION 5 pseudo-subtomograms).

Reads an optimisation set (or ``--p/--t/--mot``), writes ``<o>Subtomograms/<tomo>/<k>_data.mrc`` +
``_weights.mrc`` (or ``_stack2d.mrcs``), ``<o>particles.star``, ``<o>optimisation_set.star`` and
``<o>note.txt``, exactly as RELION 5 lays them out (``shared/research/relion_subtomo_formats.md`` §7).

Each tomogram's tilt series is read once; its particles are processed in chunks (batched FFTs,
numba-parallel insertion over the particles of a chunk), and every output is written atomically as
soon as it is ready, so memory stays bounded by the chunk. A finished tomogram leaves a marker under
``<o>temp/``; the STAR files are written once every tomogram is finished, which makes
``--only_tomos`` array tasks followed by ``--merge_only`` (or an ``--only_do_unfinished`` rerun)
equivalent to one run.
"""
from __future__ import annotations

import contextlib
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import mrcfile
import numba
import numpy as np
import pandas as pd

from ..conventions import matrix_to_euler_zyz
from ..ctf import defocus_offsets_angst
from ..errors import InputError
from ..fourier.insert import half_grid_to_full_centred, half_grid_to_real_centred, real_centred_to_half_grid
from ..fourier.shells import radius_rfft_3d
from ..geometry import particle_positions_px, project_points, visible_in_frames
from ..io.atomic import atomic_path, atomic_write_text
from ..io.inputs import read_particles_and_tomograms
from ..io.mrc import write_mrc
from ..io.note import write_note
from ..io.optimisation_set import OptimisationSet, resolve_inputs, write_optimisation_set
from ..io.particles import (
    ANGLE_COLUMNS,
    CENTRED_COLUMNS,
    LEGACY_COORDINATE_COLUMNS,
    ORIGIN_COLUMNS,
    SUBTOMO_ANGLE_COLUMNS,
    ParticleSet,
    write_particle_set,
)
from ..io.star import format_vector, parse_vector
from ..io.tomograms import TiltSeriesRows, TomogramSet
from ..io.trajectories import TrajectorySet, read_trajectories, write_trajectories
from .pipeline import (
    ExtractionSpec,
    assemble_3d,
    cone_weights,
    insert_3d,
    insert_assemble_3d,
    noise_weights_rfft_2d,
    stack_2d,
    tilt_spectra,
    tomogram_tables,
    weight_spectra,
)

__all__ = ["SubtomoOptions", "SubtomoResult", "run_subtomo", "plan_particles", "numba_threads", "UNSUPPORTED_OPTIONS"]

# Options RELION has that tomo-refine refuses loudly rather than ignoring.
UNSUPPORTED_OPTIONS = {
    "real_subtomo": "--real_subtomo (re-projection of real subtomograms from the tomogram)",
}
# Options that do nothing in RELION either.
NO_OP_OPTIONS = ("env", "diag")

# Working memory of one chunk of particles (on top of ~260 MB of libraries and numba runtime): keeps the
# benchmark (41 tilts, --b 96 --crop 64) under RELION's 315 MB peak at 4-8 particles per chunk, which is
# already enough to fill the batched FFTs and the parallel kernels.
_MEMORY_BUDGET_BYTES = 64 * 2**20


@dataclass(frozen=True)
class SubtomoOptions:
    """Options of ``tomo-refine subtomo``; field names are RELION's flag names (without ``--``).

    See ``relion_tomo_subtomo --help`` and ``docs/DESIGN.md``. ``env`` and ``diag`` are accepted and do
    nothing (as in RELION); ``real_subtomo`` raises an InputError. ``whiten`` and ``grid_precorr`` differ
    from RELION on purpose (docs/DEVIATIONS.md).
    ``only_tomos`` restricts the run to these tomograms; ``merge_only`` writes the STAR files from
    finished per-tomogram parts.
    """

    o: str
    b: int
    i: str | None = None
    p: str | None = None
    t: str | None = None
    mot: str | None = None
    crop: int = -1
    bin: float = 1.0
    stack2d: bool = False
    float16: bool = False
    multi: bool = False
    no_comb: bool = False
    ctf: bool = False
    div: bool = False
    nrm: bool = False
    min_frames: int = 1
    max_dose: float = -1.0
    cone_weight: bool = False
    cone_angle: float = 10.0
    cone_sig0: float = 2.0
    cutoff_fract: float = 0.01
    no_circle_crop: bool = False
    circle_precrop: bool = False
    taper: float = 5.0
    env: float = -1.0
    whiten: bool = False
    no_center: bool = False
    no_ic: bool = False
    no_ctf: bool = False
    apply_orientations: bool = False
    dont_apply_offsets: bool = False
    SNR: float = -1.0
    grid_precorr: bool = False
    real_subtomo: bool = False
    diag: bool = False
    only_do_unfinished: bool = False
    j: int = 6
    only_tomos: tuple | None = None
    merge_only: bool = False

    @property
    def box_3d(self) -> int:
        return self.b if self.crop <= 0 else self.crop

    @property
    def apply_offsets(self) -> bool:
        # RELION: --apply_orientations forces the offsets to be applied
        return (not self.dont_apply_offsets) or self.apply_orientations

    @property
    def out_prefix(self) -> str:
        return self.o if self.o.endswith("/") else self.o + "/"


@dataclass(frozen=True)
class SubtomoResult:
    """What a run produced. ``n_written``: particles written in this run; ``n_dropped``: particles
    with fewer than ``--min_frames`` visible frames; ``n_skipped``: finished particles skipped."""

    particles_star: Path | None
    optimisation_set_star: Path | None
    n_written: int
    n_dropped: int
    n_skipped: int = 0


@dataclass
class _TomoPlan:
    name: str
    rows: pd.DataFrame  # this tomogram's input rows (original index)
    positions_px: np.ndarray  # (n, 3) static, offsets applied if requested
    centred_angst: np.ndarray  # (n, 3) the same position as centred Å (what the output STAR records)
    shifts_angst: np.ndarray  # (n, F, 3) motion
    uv: np.ndarray  # (n, F, 2)
    visible: np.ndarray  # (n, F) bool
    kept: np.ndarray  # (n,) bool
    roots: list  # output path roots (no suffix), per particle


def _check_options(opts: SubtomoOptions) -> None:
    for name, what in UNSUPPORTED_OPTIONS.items():
        if getattr(opts, name):
            raise InputError(f"{what} is not supported by tomo-refine", field=f"--{name}",
                             fix=f"run without --{name}, or use relion_tomo_subtomo for it")
    if opts.b <= 0 or opts.b % 2:
        raise InputError(f"--b must be a positive even number, got {opts.b}", field="--b",
                         fix="RELION's centring (checkerboard, crop offsets) needs even boxes")
    s3 = opts.box_3d
    if s3 > opts.b:
        raise InputError(f"--crop {s3} is larger than --b {opts.b}", field="--crop", fix="use --crop <= --b")
    if s3 % 2:
        raise InputError(f"--crop must be even, got {s3}", field="--crop", fix="use an even output box")
    if not opts.bin > 0:
        raise InputError(f"--bin must be positive, got {opts.bin}", field="--bin")
    if int(int(opts.bin * opts.b + 0.5) / opts.bin + 0.5) != opts.b:
        raise InputError(f"--bin {opts.bin} does not give an integer window for --b {opts.b}", field="--bin",
                         fix="use an integer binning factor")
    if opts.j < 1:
        raise InputError(f"--j must be >= 1, got {opts.j}", field="--j")
    if opts.stack2d and (opts.div or opts.nrm or opts.ctf or opts.multi or opts.cone_weight):
        raise InputError("--div/--nrm/--ctf/--multi/--cone_weight need 3D output; they do not apply to --stack2d",
                         field="--stack2d", fix="drop --stack2d or the 3D-only options")
    if opts.stack2d and opts.grid_precorr:
        raise InputError("--grid_precorr compensates the trilinear 3D insertion; 2D stacks are not inserted",
                         field="--grid_precorr", fix="drop --grid_precorr or --stack2d")


def _read_inputs(opts: SubtomoOptions):
    oset = resolve_inputs(i=opts.i, p=opts.p, t=opts.t, mot=opts.mot)
    tset, pset = read_particles_and_tomograms(oset)
    traj = None
    if oset.trajectories:
        traj = read_trajectories(oset.resolved("trajectories"), particle_names=pset.particle_names())
    return oset, tset, pset, traj


def _check_no_deformations(tset: TomogramSet, name: str) -> None:
    row = tset.row(name)
    table = tset.tilt_table(name)
    has = "rlnTomoDeformationCoefficients" in table.columns or any(
        c in row.index and not pd.isna(row[c]) for c in ("rlnTomoDeformationType", "rlnTomoDeformationGridSizeX")
    )
    if has:
        raise InputError(
            f"tomogram {name} carries 2D deformations; deformation-aware extraction is not yet available in "
            "tomo-refine",
            path=tset.path,
            field="rlnTomoDeformationCoefficients",
            fix="use a tomogram set without deformations (e.g. from align without --deformation), or "
            "relion_tomo_subtomo",
        )


def _optics_for_group(tset: TomogramSet, pset: ParticleSet, name: str, group: int):
    optics = tset.optics(name)
    row = pset.optics_row(group)
    even = parse_vector(row["rlnEvenZernike"]) if "rlnEvenZernike" in row.index else np.zeros(0)
    odd = parse_vector(row["rlnOddZernike"]) if "rlnOddZernike" in row.index else np.zeros(0)
    return replace(optics, even_zernike=even, odd_zernike=odd)


def _input_visible_frames(rows: pd.DataFrame, n_tilts: int, path) -> np.ndarray | None:
    """``rlnTomoVisibleFrames`` of the input (RELION PR #1344: frames marked 0 stay excluded)."""
    if "rlnTomoVisibleFrames" not in rows.columns:
        return None
    out = np.ones((len(rows), n_tilts), bool)
    for i, (name, cell) in enumerate(zip(rows["rlnTomoParticleName"], rows["rlnTomoVisibleFrames"])):
        v = parse_vector(cell, dtype=int)
        if v.shape != (n_tilts,):
            raise InputError(f"particle {name}: rlnTomoVisibleFrames has {v.size} entries but the tilt series has "
                             f"{n_tilts}", path=path, field="data_particles/rlnTomoVisibleFrames",
                             fix="remove the column or make it match the tilt series")
        out[i] = v != 0
    return out


def _output_root(opts: SubtomoOptions, tomo: str, particle_name: str, nested: bool) -> str:
    base = f"{opts.out_prefix}Subtomograms/"
    return base + (particle_name if nested else f"{tomo}/{particle_name}")


def plan_particles(opts: SubtomoOptions, tset: TomogramSet, pset: ParticleSet, traj: TrajectorySet | None) -> list:
    """Per tomogram: static positions, projected trajectories, visibility, which particles are kept.

    Returns a list of :class:`_TomoPlan` in tomogram order of first appearance in the particle set.
    """
    plans = []
    names_all = pset.particle_names()
    nested = bool(names_all) and "/" in names_all[0]
    spec_radius = opts.bin * opts.box_3d / 2.0
    for name in pset.tomo_names():
        rows = pset.for_tomogram(name)
        geo = tset.geometry(name)
        optics = tset.optics(name)
        n_tilts = geo.n_tilts
        pix = geo.pixel_size_angst
        centred = pset.centred_angst(rows, geo.tomo_size_px, pix)
        a_sub = pset.subtomo_matrices(rows)
        origins = pset.origins_angst(rows) if opts.apply_offsets else None
        p = particle_positions_px(centred, pix, geo.tomo_size_px, origins, a_sub)
        # in Å directly, so that zero offsets give back the input values bit for bit
        centred_out = centred - np.einsum("nij,nj->ni", a_sub, origins) if origins is not None else centred.copy()
        shifts = traj.for_particles(rows["rlnTomoParticleName"], n_tilts) if traj is not None else np.zeros(
            (len(rows), n_tilts, 3))
        uv = project_points(geo.projection_matrices(), p[:, None, :] + shifts / pix)
        vis = visible_in_frames(uv, geo.image_size_px, spec_radius)
        if opts.max_dose > 0:
            vis &= (optics.pre_exposure_e_per_angst2 <= opts.max_dose)[None, :]
        given = _input_visible_frames(rows, n_tilts, pset.path)
        if given is not None:
            vis &= given
        kept = vis.sum(axis=1) >= opts.min_frames
        roots = [_output_root(opts, name, str(pn), nested) for pn in rows["rlnTomoParticleName"]]
        plans.append(_TomoPlan(name, rows, p, centred_out, shifts, uv, vis, kept, roots))
    return plans


def _primary_output(opts: SubtomoOptions, root: str) -> str:
    return root + ("_stack2d.mrcs" if opts.stack2d else "_data.mrc")


def _write_stack(path, images, pixel_size_angst: float, float16: bool) -> None:
    """An ``.mrcs`` image stack with RELION's header: voxel ``(pix, pix, 1)``."""
    arr = np.ascontiguousarray(images, dtype=np.float16 if float16 else np.float32)
    with atomic_path(path) as tmp:
        with mrcfile.new(tmp, overwrite=True) as mrc:
            mrc.set_data(arr)
            mrc.set_image_stack()
            mrc.voxel_size = (pixel_size_angst, pixel_size_angst, 1.0)
            mrc.update_header_stats()


def _radial_floor(ctf_half, box: int) -> np.ndarray:
    """RELION ``--div`` floor: ``0.001 ×`` the radial mean of C, linearly interpolated; 0 beyond the last shell."""
    r = radius_rfft_3d(box)
    n_shells = box // 2 + 1
    ri = np.round(r).astype(int)
    inside = ri < n_shells
    sums = np.bincount(ri[inside], weights=ctf_half[inside], minlength=n_shells)
    counts = np.bincount(ri[inside], minlength=n_shells)
    radial = sums / np.maximum(counts, 1)
    interp = np.interp(r, np.arange(n_shells), radial)
    return np.where(r <= n_shells - 1, 0.001 * interp, 0.0), r <= n_shells - 1


def _taper(vol, radius: float, width: float, subtract_mean: bool):
    """Spherical cosine taper (radius ``s/2``, falloff ``width``), optional mean subtraction inside."""
    box = vol.shape[-1]
    c = box // 2
    z, y, x = np.mgrid[0:box, 0:box, 0:box]
    r = np.sqrt((x - c) ** 2 + (y - c) ** 2 + (z - c) ** 2)
    if subtract_mean:
        vol = vol - vol[r < radius].mean()
    m = np.where(r < radius - width, 1.0, np.where(r < radius, 0.5 + 0.5 * np.cos(np.pi * (r - radius + width) / width),
                                                    0.0))
    return (vol * m).astype(np.float32)


def _write_3d_extras(opts, root, vol, ctf, mult, pixb, spec):
    s3 = spec.box_3d
    inv = 1.0 / pixb
    if opts.ctf:
        write_mrc(root + "_CTF2.mrc", half_grid_to_full_centred(ctf), inv, opts.float16)
    if opts.multi:
        write_mrc(root + "_multi.mrc", half_grid_to_full_centred(mult), inv, opts.float16)
    if opts.nrm or opts.div:
        half = real_centred_to_half_grid(vol)
    if opts.nrm:
        pos = mult > 0
        dn = np.where(pos, half / np.where(pos, mult, 1.0), 0)
        cn = np.where(pos, ctf / np.where(pos, mult, 1.0), 0)
        write_mrc(root + "_data_nrm.mrc", half_grid_to_real_centred(dn, s3), pixb, opts.float16)
        write_mrc(root + "_CTF2_nrm.mrc", half_grid_to_full_centred(cn), inv, opts.float16)
    if opts.div:
        if opts.SNR > 0:
            dv = half / (ctf + 1.0 / opts.SNR)
        else:
            floor, inside = _radial_floor(ctf, s3)
            denom = np.maximum(ctf, floor)
            dv = np.where(inside & (denom > 0), half / np.where(denom > 0, denom, 1.0), 0)
        real = half_grid_to_real_centred(dv, s3)
        write_mrc(root + "_div.mrc", _taper(real, s3 / 2.0, opts.taper, not opts.no_center), pixb, opts.float16)


class _BackgroundWriter:
    """Writes one chunk's files on a helper thread while the next chunk is computed (at most one chunk
    in flight, so memory stays bounded); the first write error is raised in the caller's thread."""

    def __init__(self):
        self._pool = ThreadPoolExecutor(max_workers=1)
        self._pending = None

    def submit(self, jobs) -> None:
        self.wait()
        self._pending = self._pool.submit(lambda: [fn(*args) for fn, args in jobs])

    def wait(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            pending.result()

    def close(self) -> None:
        try:
            self.wait()
        finally:
            self._pool.shutdown(wait=True)


def _process_tomogram(opts, tset, pset, plan: _TomoPlan, log) -> tuple[int, int]:
    """Make and write the outputs of one tomogram's kept particles. Returns (n_written, n_skipped)."""
    name = plan.name
    geo = tset.geometry(name)
    pix = geo.pixel_size_angst
    spec = ExtractionSpec(
        box_2d=opts.b, box_3d=opts.box_3d, binning=float(opts.bin), pixel_size_angst=pix,
        flip_sign=1.0 if opts.no_ic else -1.0, do_ctf=not opts.no_ctf, circle_crop=not opts.no_circle_crop,
        circle_precrop=opts.circle_precrop, cutoff_fract=opts.cutoff_fract, grid_precorr=opts.grid_precorr,
    )
    w_img, h_img = geo.image_size_px
    if spec.window_px > min(w_img, h_img):
        raise InputError(f"the extraction window ({spec.window_px} px = --bin x --b) is larger than the tilt images "
                         f"of {name} ({w_img}x{h_img})", path=tset.path, field="--b",
                         fix="use a smaller --b or a larger --bin")
    idx = np.flatnonzero(plan.kept)
    if opts.only_do_unfinished:
        todo = [i for i in idx if not os.path.exists(_primary_output(opts, plan.roots[i]))]
    else:
        todo = list(idx)
    n_skipped = len(idx) - len(todo)
    if not todo:
        return 0, n_skipped
    # streamed: each chunk reads only the row bands its windows need (the whole series of the benchmark
    # is 97 MB, a third of RELION's peak memory)
    with TiltSeriesRows(tset, name) as stack:
        if stack.shape[1:] != (h_img, w_img):
            raise InputError(f"tilt images of {name} are {stack.shape[2]}x{stack.shape[1]}, header said "
                             f"{w_img}x{h_img}", path=tset.path, field="rlnMicrographName")
        noise = noise_weights_rfft_2d(stack, spec, workers=opts.j) if opts.whiten else None
        return _process_particles(opts, tset, pset, plan, spec, stack, todo, noise), n_skipped


def _process_particles(opts, tset, pset, plan: _TomoPlan, spec: ExtractionSpec, stack, todo, noise=None) -> int:
    name = plan.name
    geo = tset.geometry(name)
    projections = geo.projection_matrices()
    base_optics = tset.optics(name)
    tables = tomogram_tables(projections, base_optics, spec)
    dz_all = defocus_offsets_angst(geo, plan.positions_px)
    groups = pset.optics_groups(plan.rows)
    a_sub = pset.subtomo_matrices(plan.rows)
    a_full = pset.particle_matrices(plan.rows)
    box_matrices = a_full if opts.apply_orientations else a_sub
    pixb = spec.binned_pixel_size_angst
    s2, s3, n_frames = spec.box_2d, spec.box_3d, geo.n_tilts
    # per particle: windows (float32) + ~4 complex64 spectra-sized arrays alive at once; for 3D the float64
    # interleaved accumulator (32 B per half-grid voxel), its complex64/float32 split and the volume (~24 B)
    per_particle = n_frames * (spec.window_px**2 * 4 + s2 * (s2 // 2 + 1) * 8 * 4) + (
        0 if opts.stack2d else s3 * s3 * (s3 // 2 + 1) * 56)
    chunk = int(max(opts.j, min(64, _MEMORY_BUDGET_BYTES // max(per_particle, 1))))
    # chunks of particles close in y share the row bands read for them
    todo = np.asarray(todo)
    mean_v = np.array([plan.uv[k, plan.visible[k], 1].mean() if plan.visible[k].any() else 0.0 for k in todo])
    todo = todo[np.argsort(mean_v, kind="stable")]
    optics_cache = {}
    extras = opts.ctf or opts.multi or opts.nrm or opts.div
    # insertion sums, reused by every chunk (the 3D path without extras)
    acc = None if (opts.stack2d or extras or opts.cone_weight) else np.empty((chunk, s3, s3, s3 // 2 + 1, 4))
    written = 0
    writer = _BackgroundWriter()
    try:
        for group in np.unique(groups[todo]):
            if group not in optics_cache:
                optics_cache[group] = _optics_for_group(tset, pset, name, int(group))
            optics = optics_cache[group]
            sel = todo[groups[todo] == group]
            for start in range(0, len(sel), chunk):
                ids = sel[start : start + chunk]
                vis = plan.visible[ids]
                spectra, phase = tilt_spectra(stack, plan.uv[ids], vis, spec, workers=opts.j, defer_phase=True)
                data2d, w2d = weight_spectra(spectra, spec, optics, dz_all[ids], tables.dose, workers=opts.j,
                                             stack2d=opts.stack2d, phase=phase, noise_weights=noise)
                del spectra
                if opts.stack2d:
                    writer.submit([(_write_stack, (plan.roots[k] + "_stack2d.mrcs", stk, pixb, opts.float16))
                                   for k, stk in zip(ids, stack_2d(data2d, vis, spec))])
                    written += len(ids)
                    continue
                if extras or opts.cone_weight:
                    d3, c3, m3 = insert_3d(data2d, w2d, tables.frame_rotations, box_matrices[ids], vis,
                                           tables.dose, spec)
                    if opts.cone_weight:
                        cw = cone_weights(s3, a_full[ids], opts.cone_angle, opts.cone_sig0)
                        d3 *= cw
                        c3 *= cw
                        m3 *= cw
                    vols, weights = assemble_3d(d3, c3, m3, spec, workers=opts.j)
                    del d3
                else:
                    vols, weights = insert_assemble_3d(data2d, w2d, tables.frame_rotations, box_matrices[ids], vis,
                                                       tables.dose, spec, workers=opts.j, acc=acc)
                del data2d, w2d
                jobs = []
                for j_local, k in enumerate(ids):
                    root = plan.roots[k]
                    if extras:
                        jobs.append((_write_3d_extras, (opts, root, vols[j_local], c3[j_local], m3[j_local], pixb,
                                                        spec)))
                    if not opts.no_comb:
                        jobs.append((write_mrc, (root + "_weights.mrc", weights[j_local], 1.0 / pixb, opts.float16)))
                    # the data file last: its presence marks the particle finished (--only_do_unfinished)
                    jobs.append((write_mrc, (root + "_data.mrc", vols[j_local], pixb, opts.float16)))
                writer.submit(jobs)
                written += len(ids)
    finally:
        writer.close()
    return written


def _output_particle_set(opts: SubtomoOptions, tset, pset: ParticleSet, plans) -> ParticleSet:
    """The output ``particles.star`` content (RELION ``writeParticleSet``)."""
    parts = []
    for plan in plans:
        rows = plan.rows.copy()
        centred = plan.centred_angst
        if opts.apply_offsets:
            for c in ORIGIN_COLUMNS:
                rows[c] = 0.0
        # RELION writes centred coordinates only with offsets applied, and drops rlnCoordinate* always, so
        # --dont_apply_offsets on RELION-4 input loses the positions; we always write them (DEVIATIONS.md).
        for i, c in enumerate(CENTRED_COLUMNS):
            rows[c] = centred[:, i]
        if opts.apply_orientations:
            rot, tilt, psi = matrix_to_euler_zyz(pset.particle_matrices(plan.rows))
            for c, v in zip(SUBTOMO_ANGLE_COLUMNS, (rot, tilt, psi)):
                rows[c] = np.atleast_1d(v)
            for c in ANGLE_COLUMNS:
                rows[c] = 0.0
        if opts.stack2d or "rlnTomoVisibleFrames" in rows.columns:
            rows["rlnTomoVisibleFrames"] = [format_vector(v.astype(int)) for v in plan.visible]
        rows["rlnImageName"] = [_primary_output(opts, r) for r in plan.roots]
        if opts.stack2d or opts.no_comb:
            rows = rows.drop(columns=["rlnCtfImage"], errors="ignore")
        else:
            rows["rlnCtfImage"] = [r + "_weights.mrc" for r in plan.roots]
        parts.append(rows.loc[plan.kept])
    particles = pd.concat(parts) if parts else pset.particles.iloc[:0].copy()
    particles = particles.drop(columns=[c for c in LEGACY_COORDINATE_COLUMNS if c in particles.columns])
    particles = particles.loc[[i for i in pset.particles.index if i in particles.index]].reset_index(drop=True)
    # keep RELION's column order: input columns first, then the added ones
    optics = pset.optics.copy()
    optics["rlnCtfDataAreCtfPremultiplied"] = int((not opts.no_ctf) or not opts.stack2d)
    optics["rlnImageDimensionality"] = 2 if opts.stack2d else 3
    optics["rlnTomoSubtomogramBinning"] = float(opts.bin)
    optics["rlnImagePixelSize"] = float(opts.bin) * optics["rlnTomoTiltSeriesPixelSize"].astype(float)
    optics["rlnImageSize"] = int(opts.box_3d)
    general = dict(pset.general)
    general["rlnTomoSubTomosAre2DStacks"] = int(bool(opts.stack2d))
    return ParticleSet(general=general, optics=optics, particles=particles, path=None)


def _marker(opts: SubtomoOptions, tomo: str) -> Path:
    return Path(opts.out_prefix) / "temp" / f"{tomo.replace('/', '_')}.subtomo_done"


def _write_star_outputs(opts, oset: OptimisationSet, tset, pset, traj, plans, command) -> tuple[Path, Path]:
    out = Path(opts.out_prefix)
    out_pset = _output_particle_set(opts, tset, pset, plans)
    particles_star = out / "particles.star"
    write_particle_set(out_pset, particles_star)
    n_removed = sum(int((~p.kept).sum()) for p in plans)
    trajectories = oset.trajectories
    if traj is not None and n_removed:
        kept_names = [str(n) for p in plans for n in p.rows["rlnTomoParticleName"][p.kept]]
        write_trajectories(traj.subset(kept_names), out / "motion.star")
        trajectories = f"{opts.out_prefix}motion.star"
    out_oset = OptimisationSet(particles=f"{opts.out_prefix}particles.star", tomograms=oset.tomograms,
                               trajectories=trajectories, manifolds=oset.manifolds)
    oset_star = out / "optimisation_set.star"
    write_optimisation_set(out_oset, oset_star)
    write_note(out, "subtomo", opts, command)
    return particles_star, oset_star


@contextlib.contextmanager
def numba_threads(n: int):
    """Run numba's parallel kernels on ``min(n, available)`` threads inside the block (``--j``)."""
    previous = numba.get_num_threads()
    numba.set_num_threads(max(1, min(int(n), numba.config.NUMBA_NUM_THREADS)))
    try:
        yield
    finally:
        numba.set_num_threads(previous)


def run_subtomo(opts: SubtomoOptions, log=print, command: str | None = None) -> SubtomoResult:
    """Make pseudo-subtomograms (``relion_tomo_subtomo``).

    Parameters
    ----------
    opts
        The options (RELION flag names).
    log
        Progress sink (one line per tomogram).
    command
        Command line recorded in ``note.txt`` (default: rebuilt from ``opts``).

    Returns
    -------
    SubtomoResult
        ``particles_star``/``optimisation_set_star`` are None when the run processed only some tomograms
        (``--only_tomos``) and others are still unfinished.

    Raises
    ------
    InputError
        Unsupported options, bad or inconsistent inputs (see the messages).
    """
    _check_options(opts)
    with numba_threads(opts.j):
        return _run_subtomo(opts, log, command)


def _run_subtomo(opts: SubtomoOptions, log, command: str) -> SubtomoResult:
    oset, tset, pset, traj = _read_inputs(opts)
    for name in pset.tomo_names():
        _check_no_deformations(tset, name)
    if opts.only_tomos:
        unknown = [t for t in opts.only_tomos if t not in pset.tomo_names()]
        if unknown:
            raise InputError(f"--only_tomos names tomograms without particles: {', '.join(unknown)}",
                             field="--only_tomos", fix=f"choose from {', '.join(pset.tomo_names())}")
    plans = plan_particles(opts, tset, pset, traj)
    n_dropped = sum(int((~p.kept).sum()) for p in plans)
    Path(opts.out_prefix).mkdir(parents=True, exist_ok=True)
    n_written = n_skipped = 0
    if not opts.merge_only:
        selected = set(opts.only_tomos) if opts.only_tomos else None
        for plan in plans:
            if selected is not None and plan.name not in selected:
                continue
            t0 = time.perf_counter()
            dropped = int((~plan.kept).sum())
            if opts.only_do_unfinished and _marker(opts, plan.name).exists() and all(
                    os.path.exists(_primary_output(opts, plan.roots[i])) for i in np.flatnonzero(plan.kept)):
                n_skipped += int(plan.kept.sum())
                log(f"{plan.name}: finished before, skipped")
                continue
            w, s = _process_tomogram(opts, tset, pset, plan, log)
            n_written += w
            n_skipped += s
            atomic_write_text(_marker(opts, plan.name), f"{w + s}\n")
            n_vis = int(plan.visible[plan.kept].sum())
            log(f"{plan.name}: {w} particles written, {s} finished before, {dropped} dropped "
                f"(< {opts.min_frames} visible frames), {n_vis} particle-tilts, {time.perf_counter() - t0:.1f} s")
    missing = [p.name for p in plans if not _marker(opts, p.name).exists()]
    if missing:
        if opts.merge_only:
            raise InputError(f"cannot merge: tomograms not finished: {', '.join(missing)}", path=opts.out_prefix,
                             field="--merge_only", fix="run the missing tomograms (--only_tomos) first")
        log(f"{len(missing)} tomogram(s) still to do; run them, then --merge_only to write the STAR files")
        return SubtomoResult(None, None, n_written, n_dropped, n_skipped)
    if n_dropped:
        log(f"{n_dropped} particle(s) dropped: fewer than {opts.min_frames} visible frames")
    particles_star, oset_star = _write_star_outputs(opts, oset, tset, pset, traj, plans, command)
    return SubtomoResult(particles_star, oset_star, n_written, n_dropped, n_skipped)
