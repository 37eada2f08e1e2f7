"""``tomo-refine align``: refine per-tilt projections and particle positions (drop-in for
``relion_tomo_align`` without ``--motion``/``--deformation``; relion_align.md).

Per tomogram: CC maps once per round (:mod:`.ccmaps`); in the first round a global per-tilt shift search
and a brute-force 3D offset search per particle (:mod:`.optimise`), then L-BFGS over 5 parameters per tilt
and 3 offsets per particle (:mod:`.cost`); before the second round every predicted particle is subtracted from
the tilt images (:mod:`.neighbours`), then the predictions are re-rendered, the maps recentred at the refined
geometry (each observation seeing its own particle and the noise only) and L-BFGS runs again. ``--shift_only`` stops after the shift search. Results go to ``<o>/temp/<tomo>_*`` as each tomogram
finishes (resume with ``only_do_unfinished``; scale out with ``only_tomos`` + ``merge_only``), then are
merged into ``tomograms.star``, ``particles.star``, ``optimisation_set.star``, ``note.txt`` and ``report/``.
"""
from __future__ import annotations

import contextlib
import gc
import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from ..dose import dose_weights_rfft_2d
from ..errors import InputError
from ..fourier.shells import radius_rfft_2d
from ..frames import SpilledFrames, as_frames
from ..geometry import TiltSeriesGeometry, centred_angst_from_positions_px, particle_positions_px, project_points
from ..io.atomic import atomic_write_text
from ..io.fsc import read_fsc
from ..io.inputs import read_particles_and_tomograms
from ..io.mrc import read_mrc, write_mrc
from ..io.note import write_note
from ..io.optimisation_set import OptimisationSet, resolve_inputs, write_optimisation_set
from ..io.particles import write_particle_set
from ..io.star import read_star, require_columns, require_table, write_star
from ..io.tomograms import TiltSeriesRows, write_tomogram_set
from ..io.trajectories import read_trajectories
from .ccmaps import compute_cc_maps
from .cost import AlignCost, apply_parameters
from .layout import AlignLayout
from .optimise import global_shift_search, particle_offset_search, run_lbfgs
from .neighbours import subtract_predicted_particles
from .reference import PreparedReference, prepare_reference, shell_weight_2d
from .report import TiltReport, write_report
from .weights import frequency_limit_mask, highpass_weight, noise_power_spectra, whitening_weights

__all__ = ["AlignOptions", "AlignResult", "run_align", "align_tilt_series", "REFINE_ROUNDS"]

REFINE_ROUNDS = 2
FINAL_FTOL = 1e-11  # relative cost change; 1e-13 took ~1.6x the iterations for identical results (golden + 2 sims)
# --pad: CC samples per px. With the B-spline lookup, 1 (RELION's default) leaves 0.005 px RMS on noiseless benchmark
# data; 2 gives the same accuracy (0.0450 px on the noisy benchmark either way) at ~1.5 s more per run.
MAX_PAD = 4  # the maps' memory grows as pad²
# Band limit of a first round that later rounds refine, as a fraction of Nyquist: 0.7 halves its prediction cost and
# changes the benchmark's final RMS by < 0.0001 px (0.5 let the noiseless error grow from 0.0048 to 0.0066 px).
FIRST_ROUND_BAND = 0.7
RELION_KX_BAND_LIMIT = False  # parity switch; see ccmaps.compute_cc_maps
ANGLE_COLUMNS = ("rlnTomoXTilt", "rlnTomoYTilt", "rlnTomoZRot", "rlnTomoXShiftAngst", "rlnTomoYShiftAngst")
CENTRED = ("rlnCenteredCoordinateXAngst", "rlnCenteredCoordinateYAngst", "rlnCenteredCoordinateZAngst")
ORIGINS = ("rlnOriginXAngst", "rlnOriginYAngst", "rlnOriginZAngst")


@dataclass(frozen=True)
class AlignOptions:
    """Options of ``tomo-refine align``; field names are RELION's flag names (see docs/DESIGN.md)."""

    o: str
    b: int
    i: str | None = None
    p: str | None = None
    t: str | None = None
    mot: str | None = None
    ref1: str | None = None
    ref2: str | None = None
    mask: str | None = None
    fsc: str | None = None
    r: int = 20
    it: int = 10000
    freq_cutoff: float = -1.0
    fsc_thresh_width: float = 5.0
    use_SNR_weight: bool = False
    per_frame_noise: bool = False
    no_whiten: bool = False
    hp: float = -1.0
    cutoff_fract: float = 0.02
    shift_only: bool = False
    shift_only_by_particles: bool = False
    const_p: bool = False
    const_a: bool = False
    const_s: bool = False
    range_reg: float = 0.0
    pad: int = 1
    srp: float = 0.0
    diag: bool = False
    min_frame: int = 0
    max_frame: int = -1
    only_do_unfinished: bool = False
    j: int = 6
    motion: bool = False
    s_vel: float = 0.5
    s_div: float = 5000.0
    sq_exp_ker: bool = False
    deformation: bool = False
    def_w: int = 3
    def_h: int = 3
    def_model: str = "spline"
    def_reg: float = 0.0
    per_frame_deformation: bool = False
    aniso: bool = False
    per_tilt_aniso: bool = False
    whiten_abs: bool = False
    only_tomos: tuple | None = None
    merge_only: bool = False
    keep_neighbours: bool = False  # not in RELION: skip the neighbour subtraction before the last round


@dataclass(frozen=True)
class AlignResult:
    tomograms_star: Path | None
    particles_star: Path | None
    optimisation_set_star: Path | None
    report_dir: Path | None
    tomograms: tuple = ()
    summaries: dict = field(default_factory=dict)


def _check_options(opts: AlignOptions) -> None:
    def refuse(flag, why):
        raise InputError(f"{flag} is {why}", field=flag, fix=f"run without {flag}")

    for flag, on in (("--motion", opts.motion), ("--deformation", opts.deformation),
                     ("--per_frame_deformation", opts.per_frame_deformation)):
        if on:
            refuse(flag, "not yet available in tomo-refine (static model only); use relion_tomo_align for it")
    for flag, on in (("--aniso", opts.aniso), ("--per_tilt_aniso", opts.per_tilt_aniso),
                     ("--whiten_abs", opts.whiten_abs)):
        if on:
            refuse(flag, "accepted but ignored by RELION 5 (the option has no effect there); refusing rather than "
                         "silently doing nothing")
    if opts.shift_only_by_particles and not opts.shift_only:
        raise InputError("--shift_only_by_particles only applies with --shift_only", field="--shift_only_by_particles",
                         fix="add --shift_only")
    if not 1 <= opts.pad <= MAX_PAD:
        raise InputError(f"--pad {opts.pad} must be between 1 and {MAX_PAD} (CC samples per pixel)", field="--pad",
                         fix="use --pad 1 (RELION's default; the B-spline lookup is as accurate as finer samples)")
    if opts.b is None or int(opts.b) < 8:
        raise InputError(f"box size --b {opts.b} is too small", field="--b", fix="give --b (e.g. 2× particle diameter)")
    if int(opts.b) % 2:
        raise InputError(f"box size --b {opts.b} must be even", field="--b", fix=f"use --b {int(opts.b) + 1}")
    if opts.r < 1 or opts.r > opts.b // 2 - 3:
        raise InputError(f"--r {opts.r} must be between 1 and box/2 − 3 = {opts.b // 2 - 3}", field="--r",
                         fix="lower --r or raise --b")
    if opts.def_model not in ("linear", "spline", "Fourier"):
        raise InputError(f"--def_model {opts.def_model!r} must be linear, spline or Fourier", field="--def_model")


@dataclass
class _Inputs:
    oset: OptimisationSet
    tset: object
    pset: object
    reference: PreparedReference
    tomos: list


def _load_inputs(opts: AlignOptions) -> _Inputs:
    oset = resolve_inputs(i=opts.i, p=opts.p, t=opts.t, mot=opts.mot, ref1=opts.ref1, ref2=opts.ref2, mask=opts.mask,
                          fsc=opts.fsc)
    oset.require("reference_map1", "--ref1")
    oset.require("reference_map2", "--ref2")
    tset, pset = read_particles_and_tomograms(oset)
    if "rlnRandomSubset" not in pset.particles.columns:
        raise InputError("column rlnRandomSubset is missing: each particle must be compared with its own half map",
                         path=pset.path, field="data_particles/rlnRandomSubset",
                         fix="use the particles.star from a refinement or reconstruction (it sets rlnRandomSubset)")
    subsets = pset.particles["rlnRandomSubset"].to_numpy()
    if not np.isin(subsets, (1, 2)).all():
        raise InputError("rlnRandomSubset must be 1 or 2", path=pset.path, field="data_particles/rlnRandomSubset",
                         fix="set each particle's half set to 1 or 2")
    with_particles = set(pset.tomo_names())
    if opts.only_tomos:
        for name in opts.only_tomos:
            if name not in tset.names():
                raise InputError(f"tomogram {name} (from --only_tomos) is not in the tomogram set", path=tset.path,
                                 field="data_global/rlnTomoName", fix="check the name")
            if name not in with_particles:
                raise InputError(f"tomogram {name} has no particles", path=pset.path, field="data_particles/rlnTomoName",
                                 fix="remove it from --only_tomos")
    elif not opts.merge_only:
        # A plain run refines the whole tomogram set: a tilt series without particles would be written back
        # unrefined next to refined ones, which a user cannot tell apart downstream. RELION skips it
        # silently; we stop and say which one (scale-out runs name their tomograms with --only_tomos).
        empty = [n for n in tset.names() if n not in with_particles]
        if empty and len(empty) < len(tset.names()):
            raise InputError(f"tomogram(s) {', '.join(empty)} of the tomogram set have no particles", path=pset.path,
                             field="data_particles/rlnTomoName",
                             fix="remove them from the tomogram set, or name the tomograms to refine with --only_tomos")
    tomos = [n for n in tset.names() if n in with_particles]
    for name in tomos:
        table = tset.tilt_table(name)
        if "rlnTomoDeformationCoefficients" in table.columns or "rlnTomoDeformationType" in tset.global_table.columns:
            raise InputError(f"tomogram {name} carries 2D image deformations, which align does not model yet "
                             "(RELION would centre the CC maps on them and pass them through)",
                             path=tset.path, field="rlnTomoDeformationCoefficients",
                             fix="use relion_tomo_align for deformed tilt series, or drop the deformation columns")
    if not tomos:
        raise InputError("no particle belongs to any tomogram of the tomogram set", path=pset.path,
                         field="data_particles/rlnTomoName", fix="use matching particles and tomograms files")
    half1, vox1 = read_mrc(oset.resolved("reference_map1"))
    half2, vox2 = read_mrc(oset.resolved("reference_map2"))
    paths = (oset.resolved("reference_map1"), oset.resolved("reference_map2"))
    if half1.shape != half2.shape:
        raise InputError(f"half maps differ in shape: {half1.shape} vs {half2.shape}", path=paths[1],
                         fix="use the two half maps of one reconstruction")
    mask = None
    if oset.reference_mask:
        mask, _ = read_mrc(oset.resolved("reference_mask"))
    fsc_curve = None
    if oset.reference_fsc:
        table = read_fsc(oset.resolved("reference_fsc"))
        fsc_curve = (table["rlnSpectralIndex"].to_numpy(float), table["rlnFourierShellCorrelationCorrected"].to_numpy(float))
    pix = {float(tset.pixel_size_angst(n)) for n in tomos}
    for p in pix:
        if abs(p - vox2) > 1e-3 * max(1.0, p):
            raise InputError(f"reference voxel size {vox2:g} Å differs from the tilt-series pixel size {p:g} Å",
                             path=paths[1], field="voxel size", fix="reconstruct the reference at bin 1")
    reference = prepare_reference(half1, half2, vox1, min(pix), int(opts.b), mask=mask, fsc_curve=fsc_curve,
                                  freq_cutoff_angst=opts.freq_cutoff, use_snr_weight=opts.use_SNR_weight, paths=paths)
    return _Inputs(oset, tset, pset, reference, tomos)


def align_tilt_series(stack, geometry: TiltSeriesGeometry, optics, positions_px, particle_matrices, half_index,
                      reference: PreparedReference, opts: AlignOptions, log=print, rounds: int | None = None,
                      motion_px=None, diag_path=None):
    """Align one tilt series.

    Parameters
    ----------
    stack
        float32 ``(n_tilts, H, W)``, or a frame source (:mod:`..frames`, e.g. the tilt images on disk): it is
        read one tilt at a time and never written; the neighbour subtraction's residual goes to a temporary file.
    positions_px
        float64 ``(n_particles, 3)`` static positions (decentred px, origins applied).
    particle_matrices
        float64 ``(n_particles, 3, 3)``.
    half_index
        int ``(n_particles,)`` in {0, 1}.
    motion_px
        float64 ``(n_particles, n_tilts, 3)`` input trajectories (px) or None; kept fixed (static model).
    diag_path
        With ``--diag``: where to write the per-tilt frequency weights (× limits), float32
        ``(n_tilts, s, s//2+1)`` as an MRC stack (RELION's ``diag_<tomo>_frq_weight.mrc``).

    Returns
    -------
    geometry, positions_px, report
        The refined :class:`TiltSeriesGeometry`, refined positions ``(n_particles, 3)`` and a :class:`TiltReport`.
    """
    workers = max(1, int(opts.j))
    rounds = REFINE_ROUNDS if rounds is None else int(rounds)
    s = reference.box_px
    n_f = geometry.n_tilts
    n_p = positions_px.shape[0]
    dose = dose_weights_rfft_2d(s, geometry.pixel_size_angst, optics.pre_exposure_e_per_angst2,
                                optics.bfactor_per_dose_angst2)

    def weights_for(power):
        if opts.no_whiten:
            w = np.ones((n_f, s, s // 2 + 1))
        else:
            w = whitening_weights(power, s, per_frame=opts.per_frame_noise, srp=opts.srp)
        w = w * highpass_weight(s, opts.hp)[None] * shell_weight_2d(reference, opts.fsc_thresh_width)[None]
        return w, frequency_limit_mask(w, dose, opts.cutoff_fract)

    frames = as_frames(stack)
    freq, mask = weights_for(None if opts.no_whiten else noise_power_spectra(frames, s, workers))
    own_scale = None
    if diag_path is not None:
        write_mrc(diag_path, (freq * mask).astype(np.float32), geometry.pixel_size_angst)
    # Beyond the reference envelope every weight is 0: do not render the prediction there.
    max_radius = min(s / 2.0, reference.last_shell_px + opts.fsc_thresh_width + 1.0)
    order = optics.frame_sequence()
    chrono = np.empty(n_f, int)
    chrono[order] = np.arange(n_f)
    last = n_f - 1 if opts.max_frame < 0 else min(opts.max_frame, n_f - 1)
    active = (chrono >= opts.min_frame) & (chrono <= last)
    layout = AlignLayout(n_f, n_p, not opts.const_a, not opts.const_s, not opts.const_p)
    pivot = geometry.centre_px
    geom, pos = geometry, np.asarray(positions_px, np.float64).copy()
    input_proj = geometry.projection_matrices()
    cc_before = None
    n_visible = None
    rounds_info = []

    first_band = (radius_rfft_2d(s) <= FIRST_ROUND_BAND * s / 2.0)[None]

    def maps_for(g, x, tilts=None, update=None, rnd=0):
        # A first round that is followed by others only has to get close: a lower band limit makes it cheaper.
        band = mask & first_band if rnd == 0 and rounds > 1 and not opts.shift_only else mask
        return compute_cc_maps(frames, g, optics, x, particle_matrices, half_index, reference.halves, freq, dose, band,
                               int(opts.r), workers=workers, relion_kx_band_limit=RELION_KX_BAND_LIMIT,
                               oversampling=int(opts.pad), max_radius_px=max_radius,
                               motion_px=motion_px, tilts=tilts, update=update, own_scale=own_scale)

    global_shift = np.zeros((n_f, 2))
    search_px = min(s / 2.0 - 4, max(3.0 * opts.r, s / 4.0))
    if opts.shift_only:
        return _shift_only(geom, pos, maps_for(geom, pos), active, pivot, search_px, opts, motion_px, log)
    maps = cost = None
    recentred = False  # the input geometry's CC is not in the maps once tilts were moved before round 1
    with contextlib.ExitStack() as scratch:  # the neighbour subtraction's residual frames
        for rnd in range(rounds):
            t0 = time.perf_counter()
            maps = cost = None  # drop the previous round's maps before allocating the next ones (peak memory)
            # scipy's minimize leaves reference cycles that hold the cost (and its maps) until the cyclic GC runs.
            if rnd:
                gc.collect()
            if rnd == rounds - 1 and rnd > 0 and not opts.keep_neighbours:
                # The geometry is now good enough to predict every particle: take them all out of the images, so that
                # each map sees its own particle and noise only, and whiten with the spectrum of that noise.
                support = (freq * mask) > 0  # where the maps' predictions are computed
                residual = scratch.enter_context(SpilledFrames(frames.shape))
                own_scale, residual_power = subtract_predicted_particles(
                    frames, geom, optics, pos, particle_matrices, half_index, reference.halves, dose, support, motion_px,
                    workers, out=residual)
                frames = residual
                freq, mask = weights_for(residual_power)
            maps = maps_for(geom, pos, rnd=rnd)
            if rnd == 0:
                n_visible = (maps.visible & active[None]).sum(0)
            x0_shifts = np.zeros((n_f, 2))
            if rnd == 0 and layout.fit_shifts:
                # Search well beyond ±r (the CC sum of a tilt's particles is sharp), but not to the box edge,
                # where the cyclic CC wraps and a tilt with few particles could lock onto a neighbour.
                found = global_shift_search(maps.tilt_sums, search_px, maps.oversampling)
                found[~active | (n_visible == 0)] = 0.0
                global_shift = found
                far = np.abs(found).max(axis=1) > opts.r - 3
                recentred = bool(far.any())
                if recentred:
                    # Far off for the ±r maps: move those tilts first and recompute only their maps around them (the
                    # other tilts' maps stay valid; they start L-BFGS from their found shift as usual).
                    moved_shifts = np.where(far[:, None], found, 0.0)
                    geom = geom.with_projection_matrices(apply_parameters(
                        geom.projection_matrices(), np.zeros((n_f, 3)), moved_shifts, pivot))
                    maps = maps_for(geom, pos, tilts=np.nonzero(far)[0], update=maps)
                    x0_shifts = np.where(far[:, None], 0.0, found)
                else:
                    x0_shifts = found
            cost = AlignCost(maps.maps, maps.centres_px, maps.visible, geom.projection_matrices(), pos, pivot, layout,
                             int(opts.r), opts.range_reg, active, maps.oversampling, motion_px)
            if rnd == 0 and not recentred:
                # At x = 0 every Δ is 0, so the range term vanishes and the terms are −CC at the input geometry.
                cc_before = -cost.terms(np.zeros(layout.size)).sum(0)
            x0_offsets = np.zeros((n_p, 3))
            if rnd == 0 and layout.fit_offsets:
                x0_offsets = particle_offset_search(maps.maps, maps.visible, geom.projection_matrices(), x0_shifts, active,
                                                    int(opts.r), oversampling=maps.oversampling)
            x0 = layout.pack(np.zeros((n_f, 3)), x0_shifts, x0_offsets)
            # Later rounds recentre the maps, so the first round need not be polished to the last digit.
            res = run_lbfgs(cost, x0, opts.it, ftol=FINAL_FTOL if rnd == rounds - 1 else 1e-9)
            angles, shifts, offsets = layout.unpack(res.x)
            new_proj = apply_parameters(geom.projection_matrices(), angles, shifts, pivot)
            moved = np.linalg.norm(project_points(new_proj, pos + offsets) - project_points(geom.projection_matrices(), pos),
                                   axis=-1)
            geom = geom.with_projection_matrices(new_proj)
            pos = pos + offsets
            final_terms = -cost.terms(res.x).sum(0)
            rounds_info.append({"round": rnd + 1, "cost_before": res.initial_value, "cost_after": res.value,
                                "iterations": res.n_iterations, "evaluations": res.n_evaluations,
                                "max_move_px": float(moved[:, active].max()) if moved.size else 0.0,
                                "seconds": time.perf_counter() - t0, "message": res.message})
            log(f"  {geometry.name} round {rnd + 1}: cost {res.initial_value:.6g} -> {res.value:.6g} "
                f"({res.n_iterations} iterations, max 2D move {rounds_info[-1]['max_move_px']:.3f} px, "
                f"{rounds_info[-1]['seconds']:.1f} s)")
    uv0 = project_points(input_proj, positions_px)
    uv1 = project_points(geom.projection_matrices(), pos)  # the trajectories are common to both: they cancel
    move = np.linalg.norm(uv1 - uv0, axis=-1)
    report = TiltReport.from_geometries(geometry, geom, n_visible=n_visible, cc_before=cc_before, cc_after=final_terms,
                                        mean_move_px=move.mean(0), global_shift_px=global_shift, active=active,
                                        rounds=rounds_info)
    return geom, pos, report


def _shift_only(geometry, positions, maps, active, pivot, search_px, opts, motion_px, log):
    """``--shift_only``: one rigid shift per tilt from the sum of its particles' CC maps, no L-BFGS.

    RELION's ``--shift_only_by_particles`` does this within ±r; its default mode correlates a predicted whole
    micrograph instead. Both flags run the particle-sum search here, over the same wide radius as the
    global search of a full run (the mode is meant for badly aligned tilts).
    """
    n_f, n_p = geometry.n_tilts, positions.shape[0]
    t0 = time.perf_counter()
    n_visible = (maps.visible & active[None]).sum(0)
    found = global_shift_search(maps.tilt_sums, search_px, maps.oversampling)
    found[~active | (n_visible == 0)] = 0.0
    layout = AlignLayout(n_f, n_p, fit_angles=False, fit_shifts=True, fit_offsets=False)
    cost = AlignCost(maps.maps, maps.centres_px, maps.visible, geometry.projection_matrices(), positions, pivot,
                     layout, int(opts.r), 0.0, active, maps.oversampling, motion_px)
    cc_before = -cost.terms(np.zeros(layout.size)).sum(0)
    x = layout.pack(np.zeros((n_f, 3)), found, np.zeros((n_p, 3)))
    cc_after = -cost.terms(x).sum(0)
    new = geometry.with_projection_matrices(apply_parameters(geometry.projection_matrices(), np.zeros((n_f, 3)),
                                                             found, pivot))
    move = np.linalg.norm(found, axis=1)
    info = [{"round": 1, "cost_before": float(-cc_before.sum()), "cost_after": float(-cc_after.sum()), "iterations": 0,
             "evaluations": 2, "max_move_px": float(move.max()), "seconds": time.perf_counter() - t0,
             "message": "shift only"}]
    log(f"  {geometry.name} shift only: tilt shifts up to {move.max():.2f} px")
    report = TiltReport.from_geometries(geometry, new, n_visible=n_visible, cc_before=cc_before, cc_after=cc_after,
                                        mean_move_px=move, global_shift_px=found, active=active, rounds=info)
    return new, positions, report


def _temp_paths(out: Path, name: str) -> dict:
    t = out / "temp"
    return {"projections": t / f"{name}_projections.star", "positions": t / f"{name}_positions.star",
            "report": t / f"{name}_report.json"}


def _write_temp(out: Path, name, tset, geometry: TiltSeriesGeometry, names, centred_angst, report) -> None:
    paths = _temp_paths(out, name)
    table = pd.DataFrame({
        "rlnMicrographName": tset.tilt_table(name)["rlnMicrographName"].astype(str).to_numpy(),
        "rlnTomoXTilt": geometry.x_tilt_deg, "rlnTomoYTilt": geometry.y_tilt_deg, "rlnTomoZRot": geometry.z_rot_deg,
        "rlnTomoXShiftAngst": geometry.shift_angst[:, 0], "rlnTomoYShiftAngst": geometry.shift_angst[:, 1]})
    pos = pd.DataFrame({"rlnTomoParticleName": list(names), CENTRED[0]: centred_angst[:, 0],
                        CENTRED[1]: centred_angst[:, 1], CENTRED[2]: centred_angst[:, 2]})
    write_star({name: pos}, paths["positions"])
    atomic_write_text(paths["report"], json.dumps(report.to_dict(), indent=1))
    # Written last: its presence marks the tomogram finished (--only_do_unfinished).
    write_star({name: table}, paths["projections"])


def _read_temp(out: Path, name):
    paths = _temp_paths(out, name)
    proj = require_table(read_star(paths["projections"]), name, paths["projections"])
    require_columns(proj, ANGLE_COLUMNS, paths["projections"], name)
    pos = require_table(read_star(paths["positions"]), name, paths["positions"])
    require_columns(pos, ("rlnTomoParticleName",) + CENTRED, paths["positions"], name)
    report = json.loads(paths["report"].read_text()) if paths["report"].exists() else None
    return proj, pos, report


def run_align(opts: AlignOptions, log=print, command: str | None = None) -> AlignResult:
    """Run the whole program (see module docstring). Bad input raises :class:`InputError` before any output.

    ``command`` is written to ``note.txt`` (default: rebuilt from ``opts``).
    """
    _check_options(opts)
    import numba

    numba.set_num_threads(max(1, min(int(opts.j), numba.config.NUMBA_NUM_THREADS)))
    inputs = _load_inputs(opts)
    tset, pset = inputs.tset, inputs.pset
    out = Path(opts.o)
    todo = list(opts.only_tomos) if opts.only_tomos else inputs.tomos
    skipped = [n for n in tset.names() if n not in inputs.tomos]
    if skipped and not opts.only_tomos:
        log(f"note: tomogram(s) without particles keep their geometry: {', '.join(skipped)}")
    summaries = {}
    trajectories = None
    if inputs.oset.trajectories and not opts.merge_only:
        # Static model: the input trajectories only centre the CC maps (as in RELION) and pass through unchanged.
        trajectories = read_trajectories(inputs.oset.resolved("trajectories"), pset.particle_names())
    if not opts.merge_only:
        for name in todo:
            if opts.only_do_unfinished and _temp_paths(out, name)["projections"].exists():
                log(f"{name}: already finished, skipped (--only_do_unfinished)")
                continue
            t0 = time.perf_counter()
            rows = pset.for_tomogram(name)
            geometry = tset.geometry(name)
            optics = tset.optics(name)
            pix = geometry.pixel_size_angst
            positions = particle_positions_px(pset.centred_angst(rows, geometry.tomo_size_px, pix), pix,
                                              geometry.tomo_size_px, pset.origins_angst(rows),
                                              pset.subtomo_matrices(rows))
            half = rows["rlnRandomSubset"].to_numpy(int) - 1
            motion = None
            if trajectories is not None:
                motion = trajectories.for_particles(pset.particle_names(rows), geometry.n_tilts) / pix
            log(f"{name}: {len(rows)} particles, {geometry.n_tilts} tilts")
            # The tilt images stay on disk, read a tilt at a time: the series (~100 MB here, GBs unbinned) never
            # sits in memory.
            with TiltSeriesRows(tset, name) as frames:
                new_geom, new_pos, report = align_tilt_series(
                    frames, geometry, optics, positions, pset.particle_matrices(rows), half, inputs.reference, opts,
                    log, motion_px=motion, diag_path=out / f"diag_{name}_frq_weight.mrc" if opts.diag else None)
            centred = centred_angst_from_positions_px(new_pos, pix, geometry.tomo_size_px)
            _write_temp(out, name, tset, new_geom, pset.particle_names(rows), centred, report)
            summaries[name] = report.summary()
            log(f"{name}: done in {time.perf_counter() - t0:.1f} s; {report.summary_line()}")
    if opts.only_tomos and not opts.merge_only:
        return AlignResult(None, None, None, None, tuple(todo), summaries)
    unfinished = [n for n in inputs.tomos if not _temp_paths(out, n)["projections"].exists()]
    if unfinished:
        raise InputError(f"cannot merge: tomogram(s) {', '.join(unfinished)} have no results in {out / 'temp'}",
                         path=out / "temp", field="--merge_only",
                         fix="run those tomograms first (--only_tomos NAME or --only_do_unfinished)")
    return _merge(opts, inputs, out, summaries, log, command)


def _merge(opts, inputs: _Inputs, out: Path, summaries, log, command=None) -> AlignResult:
    tset, pset = inputs.tset, inputs.pset
    particles = pset.particles.copy()
    reports = {}
    for name in inputs.tomos:
        proj, pos, report = _read_temp(out, name)
        geometry = tset.geometry(name)
        if len(proj) != geometry.n_tilts:
            raise InputError(f"{len(proj)} tilts in the temp file, {geometry.n_tilts} in the tomogram set",
                             path=_temp_paths(out, name)["projections"], field=name,
                             fix="delete the temp folder and rerun")
        new_geom = replace(geometry, x_tilt_deg=proj["rlnTomoXTilt"].to_numpy(float),
                           y_tilt_deg=proj["rlnTomoYTilt"].to_numpy(float), z_rot_deg=proj["rlnTomoZRot"].to_numpy(float),
                           shift_angst=proj[["rlnTomoXShiftAngst", "rlnTomoYShiftAngst"]].to_numpy(float))
        tset = tset.with_geometry(new_geom)
        rows = pset.for_tomogram(name)
        lookup = pd.Series(np.arange(len(pos)), index=pos["rlnTomoParticleName"].astype(str).to_numpy())
        names = pset.particle_names(rows)
        missing = [n for n in names if n not in lookup.index]
        if missing:
            raise InputError(f"particle {missing[0]} has no refined position", path=_temp_paths(out, name)["positions"],
                             field="rlnTomoParticleName", fix="delete the temp folder and rerun")
        idx = lookup.loc[names].to_numpy()
        values = pos[list(CENTRED)].to_numpy(float)[idx]
        for k, col in enumerate(CENTRED):
            if col not in particles.columns:
                particles[col] = 0.0
            particles.loc[rows.index, col] = values[:, k]
        if report is not None:
            reports[name] = report
    for col in ORIGINS:
        particles[col] = 0.0
    particles = particles.drop(columns=[c for c in ("rlnCoordinateX", "rlnCoordinateY", "rlnCoordinateZ")
                                        if c in particles.columns])
    out.mkdir(parents=True, exist_ok=True)
    tomo_star, part_star, oset_star = out / "tomograms.star", out / "particles.star", out / "optimisation_set.star"
    write_tomogram_set(tset, tomo_star, write_projection_matrices=True)
    if opts.shift_only:
        part_star = None  # as RELION: positions are unchanged, the optimisation set keeps the input particles
    else:
        write_particle_set(pset.with_particles(particles), part_star)
    # RELION drops the reference, mask and FSC entries here; keeping them lets the next job run on --i alone.
    oset = replace(inputs.oset, particles=str(part_star) if part_star else inputs.oset.particles,
                   tomograms=str(tomo_star), path=None)
    write_optimisation_set(oset, oset_star)
    write_note(out, "align", opts, command)
    report_dir = write_report(reports, out / "report")
    log(f"wrote {tomo_star}, {part_star or '(no particles.star: --shift_only)'}, {oset_star} and {report_dir}")
    return AlignResult(tomo_star, part_star, oset_star, report_dir, tuple(inputs.tomos), summaries)
