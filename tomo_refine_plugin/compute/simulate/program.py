"""``simulate_dataset``: a complete RELION-5 dataset with known truth.

Layout (paths inside the STAR files are relative to ``out_dir``, as in the golden datasets)::

    tilt_series/TS_01.mrcs  tilt_series/TS_01.star  tomograms.star  particles.star
    ref_half1.mrc  ref_half2.mrc  mask.mrc  fsc.star  optimisation_set.star
    truth/map.mrc  truth/tomograms.star  truth/tilt_series/TS_01.star  truth/particles.star
    truth/motion.star  truth/optimisation_set.star  truth/errors.json

Image formation uses the TRUE geometry; the top-level STAR files carry the PERTURBED geometry.
For each particle ``p`` and tilt ``f``:

1. ``M = R_f · A_p`` (true tilt rotation times the particle's Euler matrix); project the phantom along the
   beam exactly (:func:`.projector.project_blobs`: line integrals of its Gaussian blobs);
2. its 3D position is ``X_pf = p + τ_pf / pix`` (τ = the true trajectory, Å), its image position
   ``u = (P_f X_pf)_{xy} + def_f((P_f X_pf)_{xy})`` (2D deformation, 'linear' model:
   ``def = (axx·r_x, axy·r_x + ayy·r_y)``, ``r = u − (W/2, H/2)``, RELION's linear model);
3. in a ``2·box`` patch: Fourier-shift to the sub-pixel position, multiply by RELION's CTF with the
   depth-dependent defocus ``Δf += hand · pix · [R_f (X_pf − c)]_z`` (from the *moved* position) and by
   the dose filter of ``rlnMicrographPreExposure``, negate (dark particles) and add into the image;
4. finally add white Gaussian noise with ``σ² = signal power / snr``, the signal power being the mean
   squared noiseless signal inside the particle disc (radius = blob extent).

The 2D deformation only moves each particle as a whole (it does not distort the particle image), which
is how RELION's model uses it too.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage

from ... import __version__
from ..conventions import euler_zyz_to_matrix, relion_angles_to_projection, tomogram_centre_px
from ..fourier.shells import fourier_shell_correlation, radius_rfft_3d  # binning only, not image formation
from ..io.atomic import atomic_write_text
from ..io.mrc import write_mrc
from ..io.star import format_vector, write_star
from .options import SimulationOptions
from .phantom import make_phantom, render_phantom
from .physics import grant_grigorieff_dose_weight, relion_ctf, rfft_frequencies_inv_angst
from .projector import irfft2, project_blobs, project_map, rfft2

__all__ = ["SimulationResult", "simulate_dataset", "render_particles", "dose_symmetric_order", "linear_deformation_px"]


@dataclass(frozen=True)
class SimulationResult:
    """Where the dataset went and the numbers that describe it."""

    out_dir: Path
    optimisation_set_star: Path
    truth_optimisation_set_star: Path
    errors_json: Path
    tomo_names: tuple
    n_particles: int
    noise_sigma: float
    seconds: float


def dose_symmetric_order(nominal_deg: np.ndarray, group: int, symmetric: bool = True) -> np.ndarray:
    """Acquisition order: tilt indices, chronological.

    Dose-symmetric (Hagen 2017): start at the tilt nearest 0°, then ``group`` tilts on the positive side,
    ``group`` on the negative side, and so on outward. Otherwise: from the most negative tilt upward.
    """
    n = len(nominal_deg)
    if not symmetric:
        return np.argsort(nominal_deg, kind="stable")
    start = int(np.argmin(np.abs(nominal_deg)))
    order = np.argsort(nominal_deg, kind="stable")
    rank = int(np.where(order == start)[0][0])
    pos = list(order[rank + 1:])
    neg = list(order[:rank][::-1])
    seq = [start]
    while pos or neg:
        seq += pos[:group]
        pos = pos[group:]
        seq += neg[:group]
        neg = neg[group:]
    assert len(seq) == n
    return np.array(seq, dtype=int)


def linear_deformation_px(uv: np.ndarray, coefficients: np.ndarray, image_size_px) -> np.ndarray:
    """RELION's 'linear' 2D deformation: displacement ``(axx·r_x, axy·r_x + ayy·r_y)``, ``r = uv − (W/2, H/2)``.

    Parameters
    ----------
    uv
        ``(..., n_tilts, 2)`` image positions (px).
    coefficients
        ``(n_tilts, 3)``: ``axx, axy, ayy`` per tilt.

    Returns
    -------
    displacement
        float64, shape of ``uv`` (px).
    """
    w, h = image_size_px
    r = np.asarray(uv, float) - np.array([w / 2.0, h / 2.0])
    a = np.asarray(coefficients, float)
    out = np.empty_like(r)
    out[..., 0] = a[:, 0] * r[..., 0]
    out[..., 1] = a[:, 1] * r[..., 0] + a[:, 2] * r[..., 1]
    return out


def _random_rotation_angles(rng, n):
    rot = rng.uniform(-180.0, 180.0, n)
    tilt = np.rad2deg(np.arccos(rng.uniform(-1.0, 1.0, n)))
    psi = rng.uniform(-180.0, 180.0, n)
    return rot, tilt, psi


def _particle_positions(rng, n, tomo_size_px, margin_px, min_distance_px, projections=None, image_size_px=None,
                        image_margin_px=0.0):
    """Uniform positions in the tomogram's interior, at least ``min_distance_px`` apart (decentred px).

    With ``projections`` ``(n_tilts, 4, 4)``, a candidate is kept only if its projection lies at least
    ``image_margin_px`` inside the ``(W, H)`` image in every tilt (then every particle carries data at every tilt).
    """
    lo = np.array([margin_px, margin_px, 0.15 * tomo_size_px[2]])
    hi = np.array([tomo_size_px[0] - margin_px, tomo_size_px[1] - margin_px, 0.85 * tomo_size_px[2]])
    points = []
    for _ in range(200 * n):
        candidate = rng.uniform(lo, hi)
        if projections is not None and image_margin_px > 0:
            uv = projections[:, :2, :3] @ candidate + projections[:, :2, 3]
            if np.any(uv < image_margin_px) or np.any(uv > np.asarray(image_size_px) - image_margin_px):
                continue
        if all(np.linalg.norm(candidate - q) >= min_distance_px for q in points):
            points.append(candidate)
            if len(points) == n:
                return np.array(points)
    raise ValueError(
        f"cannot place {n} particles {min_distance_px:.1f} px apart in a {tomo_size_px} tomogram"
        f"{' inside every tilt image' if projections is not None and image_margin_px > 0 else ''}; "
        "use fewer particles, a larger image/tomogram or a smaller --inside_margin_px"
    )


def _smooth_trajectories(rng, n_particles, sequence, speed_angst_per_step):
    """Per-particle smooth motion in Å, ``(n_particles, n_tilts, 3)`` in tilt-table order, 0 at the first dose."""
    n_tilts = len(sequence)
    traj = np.zeros((n_particles, n_tilts, 3))
    if speed_angst_per_step <= 0:
        return traj
    velocity = ndimage.gaussian_filter1d(rng.normal(size=(n_particles, n_tilts - 1, 3)), 2.0, axis=1, mode="nearest")
    velocity *= speed_angst_per_step / np.sqrt(np.mean(np.sum(velocity**2, axis=-1)))
    chronological = np.concatenate([np.zeros((n_particles, 1, 3)), np.cumsum(velocity, axis=1)], axis=1)
    traj[:, sequence] = chronological
    return traj


def _soft_sphere(box_px, radius_px, edge_px):
    axis = np.arange(box_px) - box_px // 2
    z, y, x = np.meshgrid(axis, axis, axis, indexing="ij")
    r = np.sqrt(x * x + y * y + z * z)
    mask = np.where(r <= radius_px, 1.0, 0.0)
    ramp = (r > radius_px) & (r < radius_px + edge_px)
    mask[ramp] = 0.5 + 0.5 * np.cos(np.pi * (r[ramp] - radius_px) / edge_px)
    return mask.astype(np.float32)


def _shaped_noise(rng, volume, relative_level):
    """Gaussian noise whose radial power spectrum is ``relative_level²`` times that of ``volume``."""
    b = volume.shape[0]
    shell = np.rint(radius_rfft_3d(b)).astype(int)
    fv = np.fft.rfftn(volume)
    fn = np.fft.rfftn(rng.normal(size=volume.shape))
    n_shells = shell.max() + 1
    counts = np.maximum(np.bincount(shell.ravel(), minlength=n_shells), 1)
    map_power = np.bincount(shell.ravel(), (np.abs(fv) ** 2).ravel(), n_shells) / counts
    noise_power = np.bincount(shell.ravel(), (np.abs(fn) ** 2).ravel(), n_shells) / counts
    gain = relative_level * np.sqrt(map_power / np.maximum(noise_power, 1e-300))
    return np.fft.irfftn(fn * gain[shell], s=volume.shape)


def _lowpass(volume, pixel_size_angst, resolution_angst, width_shells=2.0):
    b = volume.shape[0]
    k = radius_rfft_3d(b)  # shells
    cutoff = b * pixel_size_angst / resolution_angst
    filt = np.clip(0.5 + 0.5 * np.cos(np.pi * (k - cutoff + width_shells / 2) / width_shells), 0, 1)
    filt[k <= cutoff - width_shells / 2] = 1.0
    return np.fft.irfftn(np.fft.rfftn(volume) * filt, s=volume.shape)


def _format_table(values):
    return [float(v) for v in np.asarray(values).ravel()]


def render_particles(
    coefficients,
    projections,
    particle_matrices,
    positions_px,
    image_size_px,
    tomo_size_px,
    pixel_size_angst,
    hand,
    defocus_u_angst,
    defocus_v_angst,
    defocus_angle_deg,
    pre_exposure_e_per_angst2,
    voltage_kv,
    cs_mm,
    amplitude_contrast,
    radius_px,
    deformation=None,
    apply_ctf=True,
    apply_dose=True,
    box_px=None,
):
    """Noiseless tilt images of particles (steps 1–3 of the module docstring).

    Parameters
    ----------
    coefficients
        ``(b, b, b)`` spline coefficients of the map (:func:`.projector.prepare_map`), or a callable
        ``rotations (n, 3, 3) -> (n, box_px, box_px)`` projections (e.g. :func:`.projector.project_blobs`).
    projections
        ``(n_tilts, 4, 4)`` true projection matrices.
    particle_matrices
        ``(n_particles, 3, 3)`` Euler matrices ``A_p``.
    positions_px
        ``(n_particles, n_tilts, 3)`` decentred px, motion included.
    image_size_px, tomo_size_px
        ``(W, H)`` and ``(w0, h0, d0)``.
    defocus_u_angst, defocus_v_angst, defocus_angle_deg, pre_exposure_e_per_angst2
        ``(n_tilts,)`` each.
    radius_px
        Particle radius used for the signal-power estimate.
    deformation
        ``(n_tilts, 3)`` linear deformation coefficients or None.
    box_px
        Projection box when ``coefficients`` is a callable.

    Returns
    -------
    stack
        float64 ``(n_tilts, H, W)``.
    signal_power_sum, signal_count
        Sum of squared signal inside the particle discs and the number of pixels summed.
    """
    if callable(coefficients):
        project, box = coefficients, int(box_px)
    else:
        box = coefficients.shape[0]
        project = lambda rotations: project_map(coefficients, rotations)  # noqa: E731
    patch = 2 * box
    width, height = image_size_px
    n_tilts = projections.shape[0]
    rot_true = projections[:, :3, :3]
    centre = tomogram_centre_px(tomo_size_px)
    ky, kx = rfft_frequencies_inv_angst(patch, pixel_size_angst)
    yy, xx = np.mgrid[:patch, :patch]
    filters = np.ones((n_tilts,) + np.broadcast_shapes(ky.shape, kx.shape))
    if apply_dose:
        filters *= np.stack([grant_grigorieff_dose_weight(ky, kx, d) for d in pre_exposure_e_per_angst2])
    ctf_args = (voltage_kv, cs_mm, amplitude_contrast)
    defocus_angle = np.asarray(defocus_angle_deg, float)[:, None, None]
    shift_ky, shift_kx = np.fft.fftfreq(patch)[None, :, None], np.fft.rfftfreq(patch)[None, None, :]
    stack = np.zeros((n_tilts, height, width), dtype=np.float64)
    power, count = 0.0, 0
    lo = patch // 2 - box // 2
    canvas = np.zeros((n_tilts, patch, patch))
    for p in range(len(particle_matrices)):
        # One batch per particle (all its tilts): batched FFTs and CTFs instead of one small FFT per image.
        canvas[:, lo:lo + box, lo:lo + box] = project(rot_true @ particle_matrices[p])
        moved = positions_px[p]
        uv = np.einsum("fij,fj->fi", projections[:, :2, :3], moved) + projections[:, :2, 3]
        if deformation is not None:
            uv = uv + linear_deformation_px(uv, deformation, image_size_px)
        depth = np.einsum("fj,fj->f", rot_true[:, 2, :], moved - centre)
        whole = np.floor(uv + 0.5)
        frac = uv - whole
        spectrum = rfft2(canvas) * filters
        spectrum *= np.exp(-2j * np.pi * (shift_kx * frac[:, 0, None, None] + shift_ky * frac[:, 1, None, None]))
        if apply_ctf:
            dz = (hand * pixel_size_angst * depth)[:, None, None]
            spectrum *= relion_ctf(ky[None], kx[None], *ctf_args,
                                   np.asarray(defocus_u_angst, float)[:, None, None] + dz,
                                   np.asarray(defocus_v_angst, float)[:, None, None] + dz, defocus_angle)
        images = -irfft2(spectrum, patch)  # dark particles
        for f in range(n_tilts):
            image = images[f]
            u0, v0 = int(whole[f, 0]) - patch // 2, int(whole[f, 1]) - patch // 2
            xs = slice(max(u0, 0), min(u0 + patch, width))
            ys = slice(max(v0, 0), min(v0 + patch, height))
            if xs.start >= xs.stop or ys.start >= ys.stop:
                continue
            stack[f, ys, xs] += image[ys.start - v0:ys.stop - v0, xs.start - u0:xs.stop - u0]
            inside = (xx - patch // 2 - frac[f, 0]) ** 2 + (yy - patch // 2 - frac[f, 1]) ** 2 <= radius_px**2
            power += float(np.sum(image[inside] ** 2))
            count += int(inside.sum())
    return stack, power, count


def simulate_dataset(out_dir, options: SimulationOptions = SimulationOptions(), log=print) -> SimulationResult:
    """Write a simulated RELION-5 dataset and its ground truth under ``out_dir`` (see the module docstring).

    Parameters
    ----------
    out_dir
        Output folder (created). Existing files of the same names are replaced.
    options
        :class:`SimulationOptions`.
    log
        Progress printer (one line per tomogram).

    Returns
    -------
    SimulationResult
    """
    t_start = time.perf_counter()
    opts = options
    out = Path(out_dir)
    (out / "tilt_series").mkdir(parents=True, exist_ok=True)
    (out / "truth" / "tilt_series").mkdir(parents=True, exist_ok=True)
    pix = float(opts.pixel_size_angst)
    box = int(opts.box_px)
    width, height = opts.image_size_px
    tomo_size = opts.tomo_size_px
    streams = np.random.SeedSequence(opts.seed).spawn(2 + opts.n_tomograms)
    map_rng, ref_rng = np.random.default_rng(streams[0]), np.random.default_rng(streams[1])

    phantom = make_phantom(map_rng, box, pix, opts.n_blobs, opts.n_fine_blobs, opts.fine_sigma_px)
    truth_map = render_phantom(phantom, box, pix)
    radius_px = phantom.radius_angst / pix
    # Exact projections of the blobs that render_phantom samples (no interpolation blur, ~1000x faster than
    # rotating the sampled map); render_particles(prepare_map(map), ...) projects an arbitrary map instead.
    blob_args = (phantom.centres_angst / pix, phantom.sigmas_angst / pix, phantom.amplitudes)
    projector = lambda rotations: project_blobs(*blob_args, rotations, box)  # noqa: E731

    patch = 2 * box
    nominal = (np.arange(opts.n_tilts) - (opts.n_tilts - 1) / 2.0) * opts.tilt_step_deg
    sequence = dose_symmetric_order(nominal, opts.dose_group, opts.dose_symmetric)
    pre_exposure = np.empty(opts.n_tilts)
    pre_exposure[sequence] = np.arange(opts.n_tilts) * opts.dose_per_tilt_e_per_angst2

    global_rows, truth_global_rows, particle_rows, truth_particle_rows = [], [], [], []
    trajectories, json_tomos, json_errors = {}, {}, {}
    signal_sum, signal_count, stacks = 0.0, 0, {}

    for t in range(opts.n_tomograms):
        name = f"TS_{t + 1:02d}"
        rng = np.random.default_rng(streams[2 + t])
        n_tilts = opts.n_tilts
        # True geometry: nominal plus the jitter a real tilt series has; the errors go on top of it.
        true_x = rng.normal(0.0, opts.true_angle_jitter_deg, n_tilts)
        true_y = nominal + rng.normal(0.0, opts.true_angle_jitter_deg, n_tilts)
        true_z = opts.tilt_axis_deg + rng.normal(0.0, opts.true_angle_jitter_deg, n_tilts)
        true_shift = rng.normal(0.0, opts.true_shift_px, (n_tilts, 2)) * pix
        angle_err = rng.normal(size=(n_tilts, 3)) * np.array(opts.angle_err_deg)
        shift_err_px = rng.normal(0.0, 1.0, (n_tilts, 2)) * opts.shift_err_px
        defocus = opts.defocus_angst + rng.normal(0.0, opts.defocus_spread_angst, n_tilts)
        defocus_u = defocus + opts.astigmatism_angst / 2.0
        defocus_v = defocus - opts.astigmatism_angst / 2.0
        defocus_angle = float(rng.uniform(-90.0, 90.0))
        deform_sigma = opts.deformation_px / math.sqrt((2.0 * width**2 + height**2) / 12.0)
        deform = rng.normal(0.0, 1.0, (n_tilts, 3)) * deform_sigma

        proj_true = relion_angles_to_projection(
            true_x, true_y, true_z, true_shift[:, 0], true_shift[:, 1], pix, tomo_size, (width, height)
        )
        positions = _particle_positions(rng, opts.n_particles, tomo_size, box / 2.0, 2.0 * radius_px + 2.0,
                                        proj_true, (width, height), opts.inside_margin)
        rot, tilt, psi = _random_rotation_angles(rng, opts.n_particles)
        pos_err_px = rng.normal(0.0, 1.0, (opts.n_particles, 3)) * opts.position_err_px
        traj_angst = _smooth_trajectories(rng, opts.n_particles, sequence, opts.motion_angst_per_step)
        noise_entropy = rng.integers(2**63)  # drawn either way: --noise_seed changes the noise and nothing else
        noise_rng = np.random.default_rng(noise_entropy if opts.noise_seed < 0 else (opts.noise_seed, t))

        centre = tomogram_centre_px(tomo_size)
        particle_mats = euler_zyz_to_matrix(rot, tilt, psi)

        moved = positions[:, None, :] + traj_angst / pix  # (n_particles, n_tilts, 3)
        stack, power, count = render_particles(
            projector, proj_true, particle_mats, moved, (width, height), tomo_size, pix, opts.hand,
            defocus_u, defocus_v, np.full(n_tilts, defocus_angle), pre_exposure,
            opts.voltage_kv, opts.cs_mm, opts.amplitude_contrast, radius_px,
            deformation=deform if opts.deformation_px > 0 else None,
            apply_ctf=opts.apply_ctf, apply_dose=opts.apply_dose, box_px=box,
        )
        signal_sum += power
        signal_count += count
        stacks[name] = (stack, noise_rng)

        perturbed_x = true_x + angle_err[:, 0]
        perturbed_y = true_y + angle_err[:, 1]
        perturbed_z = true_z + angle_err[:, 2]
        perturbed_shift = true_shift + shift_err_px * pix
        centred_true = (positions - centre) * pix
        centred_perturbed = (positions + pos_err_px - centre) * pix

        def tilt_table(xt, yt, zr, shift, with_deformation):
            table = pd.DataFrame(
                {
                    "rlnMicrographName": [f"{f + 1}@tilt_series/{name}.mrcs" for f in range(n_tilts)],
                    "rlnTomoNominalStageTiltAngle": nominal,
                    "rlnTomoNominalTiltAxisAngle": np.full(n_tilts, opts.tilt_axis_deg),
                    "rlnMicrographPreExposure": pre_exposure,
                    "rlnTomoNominalDefocus": np.full(n_tilts, -opts.defocus_angst / 1e4),
                    "rlnDefocusU": defocus_u,
                    "rlnDefocusV": defocus_v,
                    "rlnDefocusAngle": np.full(n_tilts, defocus_angle),
                    "rlnCtfScalefactor": np.ones(n_tilts),
                    "rlnTomoXTilt": xt,
                    "rlnTomoYTilt": yt,
                    "rlnTomoZRot": zr,
                    "rlnTomoXShiftAngst": shift[:, 0],
                    "rlnTomoYShiftAngst": shift[:, 1],
                }
            )
            if with_deformation:
                table["rlnTomoDeformationCoefficients"] = [format_vector(c) for c in deform]
            return table

        has_deformation = opts.deformation_px > 0
        write_star({name: tilt_table(perturbed_x, perturbed_y, perturbed_z, perturbed_shift, False)},
                   out / "tilt_series" / f"{name}.star")
        write_star({name: tilt_table(true_x, true_y, true_z, true_shift, has_deformation)},
                   out / "truth" / "tilt_series" / f"{name}.star")
        row = {
            "rlnTomoName": name,
            "rlnVoltage": opts.voltage_kv,
            "rlnSphericalAberration": opts.cs_mm,
            "rlnAmplitudeContrast": opts.amplitude_contrast,
            "rlnMicrographOriginalPixelSize": pix,
            "rlnTomoHand": opts.hand,
            "rlnOpticsGroupName": "optics1",
            "rlnTomoTiltSeriesPixelSize": pix,
            "rlnTomoTiltSeriesStarFile": f"tilt_series/{name}.star",
            "rlnTomoSizeX": tomo_size[0],
            "rlnTomoSizeY": tomo_size[1],
            "rlnTomoSizeZ": tomo_size[2],
        }
        global_rows.append(row)
        truth_row = dict(row, rlnTomoTiltSeriesStarFile=f"truth/tilt_series/{name}.star")
        if has_deformation:
            # RELION stores the linear model with a 1x1 grid (its loader ignores the grid size).
            truth_row.update(rlnTomoDeformationGridSizeX=1, rlnTomoDeformationGridSizeY=1,
                             rlnTomoDeformationType="linear")
        truth_global_rows.append(truth_row)

        names = [f"{name}/{p + 1}" for p in range(opts.n_particles)]
        for p in range(opts.n_particles):
            common = {
                "rlnTomoName": name,
                "rlnTomoParticleName": names[p],
                "rlnOriginXAngst": 0.0,
                "rlnOriginYAngst": 0.0,
                "rlnOriginZAngst": 0.0,
                "rlnAngleRot": rot[p],
                "rlnAngleTilt": tilt[p],
                "rlnAnglePsi": psi[p],
                "rlnOpticsGroup": 1,
                "rlnRandomSubset": 1 + (len(particle_rows) % 2),
                "rlnClassNumber": 1,
            }
            coords = lambda c: {  # noqa: E731 - keeps the golden column order
                "rlnCenteredCoordinateXAngst": c[0],
                "rlnCenteredCoordinateYAngst": c[1],
                "rlnCenteredCoordinateZAngst": c[2],
            }
            ordered = lambda c: {k: v for k, v in list(common.items())[:2]} | coords(c) | dict(  # noqa: E731
                list(common.items())[2:]
            )
            particle_rows.append(ordered(centred_perturbed[p]))
            truth_particle_rows.append(ordered(centred_true[p]))
            trajectories[names[p]] = traj_angst[p]

        json_tomos[name] = {
            "frame_sequence_chronological": sequence.tolist(),
            "true": {
                "xtilt": _format_table(true_x), "ytilt": _format_table(true_y), "zrot": _format_table(true_z),
                "xshift_A": _format_table(true_shift[:, 0]), "yshift_A": _format_table(true_shift[:, 1]),
                "defocusU": _format_table(defocus_u), "defocusV": _format_table(defocus_v),
                "defocus_angle": defocus_angle, "pre_exposure": _format_table(pre_exposure),
                "positions_px": positions.tolist(), "angles_rot_tilt_psi": np.stack([rot, tilt, psi], 1).tolist(),
            },
            "perturbed": {
                "xtilt": _format_table(perturbed_x), "ytilt": _format_table(perturbed_y),
                "zrot": _format_table(perturbed_z), "xshift_A": _format_table(perturbed_shift[:, 0]),
                "yshift_A": _format_table(perturbed_shift[:, 1]), "positions_px": (positions + pos_err_px).tolist(),
            },
        }
        json_errors[name] = {
            "tilt_err_deg_xtilt_ytilt_zrot": angle_err.tolist(),
            "shift_err_px": shift_err_px.tolist(),
            "pos_err_px": pos_err_px.tolist(),
            "motion_angst_per_step_rms": opts.motion_angst_per_step,
            "trajectories_angst": traj_angst.tolist(),
            "deformation_model": "linear" if has_deformation else None,
            "deformation_coefficients_axx_axy_ayy": deform.tolist() if has_deformation else None,
        }
        log(f"simulate: {name}: {n_tilts} tilts, {opts.n_particles} particles")

    signal_power = signal_sum / max(signal_count, 1)
    noise_sigma = 0.0 if math.isinf(opts.snr) else math.sqrt(signal_power / opts.snr)
    for name, (stack, noise_rng) in stacks.items():
        if noise_sigma > 0:
            for image in stack:  # one tilt at a time: the same draws as one call, without a stack-sized temporary
                image += noise_rng.normal(0.0, noise_sigma, image.shape)
        write_mrc(out / "tilt_series" / f"{name}.mrcs", stack.astype(np.float32), pix)

    global_table = pd.DataFrame(global_rows)
    write_star({"global": global_table}, out / "tomograms.star")
    write_star({"global": pd.DataFrame(truth_global_rows)}, out / "truth" / "tomograms.star")
    optics = pd.DataFrame(
        {
            "rlnOpticsGroup": [1],
            "rlnOpticsGroupName": ["optics1"],
            "rlnSphericalAberration": [opts.cs_mm],
            "rlnVoltage": [opts.voltage_kv],
            "rlnAmplitudeContrast": [opts.amplitude_contrast],
            "rlnTomoTiltSeriesPixelSize": [pix],
        }
    )
    general = {"rlnTomoSubTomosAre2DStacks": 0}
    write_star({"general": general, "optics": optics, "particles": pd.DataFrame(particle_rows)},
               out / "particles.star")
    write_star({"general": general, "optics": optics, "particles": pd.DataFrame(truth_particle_rows)},
               out / "truth" / "particles.star")
    motion_blocks = {"general": {"rlnParticleNumber": len(trajectories)}}
    for pname, traj in trajectories.items():
        motion_blocks[pname] = pd.DataFrame(
            {"rlnOriginXAngst": traj[:, 0], "rlnOriginYAngst": traj[:, 1], "rlnOriginZAngst": traj[:, 2]}
        )
    write_star(motion_blocks, out / "truth" / "motion.star")

    # References: the truth plus independent noise per half, then low-passed a little. The noise has the map's own
    # radial spectrum (relative level ref_noise in every shell): white noise would swamp the blobs' weak high
    # frequencies and give references far worse than 'slightly noisy'. ref_is_truth: the golden datasets' (and
    # RELION's benchmark's) choice, which isolates the alignment error from the reference error.
    if opts.ref_is_truth:
        halves = [truth_map.astype(np.float32)] * 2
    else:
        resolution = opts.ref_lowpass_resolution_angst
        halves = [
            _lowpass(truth_map + _shaped_noise(ref_rng, truth_map, opts.ref_noise), pix, resolution).astype(np.float32)
            for _ in range(2)
        ]
    mask_radius = min(radius_px + 2.0, box / 2.0 - opts.mask_edge_px)
    mask = _soft_sphere(box, mask_radius, opts.mask_edge_px)
    write_mrc(out / "truth" / "map.mrc", truth_map, pix)
    write_mrc(out / "ref_half1.mrc", halves[0], pix)
    write_mrc(out / "ref_half2.mrc", halves[1], pix)
    write_mrc(out / "mask.mrc", mask, pix)
    fsc = fourier_shell_correlation(halves[0].astype(np.float64) * mask, halves[1].astype(np.float64) * mask)
    shells = np.arange(box // 2 + 1)
    resolution_inv = shells / (box * pix)
    write_star(
        {
            "fsc": pd.DataFrame(
                {
                    "rlnSpectralIndex": shells,
                    "rlnResolution": resolution_inv,
                    "rlnAngstromResolution": np.where(shells > 0, box * pix / np.maximum(shells, 1), 999.0),
                    "rlnFourierShellCorrelationCorrected": np.clip(fsc, -1.0, 1.0),
                }
            )
        },
        out / "fsc.star",
    )
    refs = {
        "rlnTomoReferenceMap1File": "ref_half1.mrc",
        "rlnTomoReferenceMap2File": "ref_half2.mrc",
        "rlnTomoReferenceMaskFile": "mask.mrc",
    }
    write_star({"": {"rlnTomoParticlesFile": "particles.star", "rlnTomoTomogramsFile": "tomograms.star", **refs}},
               out / "optimisation_set.star")
    truth_set = {"rlnTomoParticlesFile": "truth/particles.star", "rlnTomoTomogramsFile": "truth/tomograms.star"}
    if opts.motion_angst_per_step > 0:
        truth_set["rlnTomoTrajectoriesFile"] = "truth/motion.star"
    write_star({"": {**truth_set, **refs}}, out / "truth" / "optimisation_set.star")

    report = {
        "simulator": "tomo-refine simulate",
        "version": __version__,
        "options": asdict(opts),
        "projector": "analytic (line integrals of the Gaussian blobs)",
        "box": box,
        "patch": patch,
        "particle_radius_px": radius_px,
        "signal_power_per_px": signal_power,
        "noise_sigma": noise_sigma,
        "contrast": "image = -IFFT[CTF_relion * doseweight(PreExposure) * FT(projection)] + noise (dark particles)",
        "defocus_depth": "moved position (trajectory applied)",
        "phantom": phantom.to_json(),
        "errors": {"tomograms": json_errors},
        "tomograms": json_tomos,
    }
    errors_json = out / "truth" / "errors.json"
    atomic_write_text(errors_json, json.dumps(report, indent=1, default=float))
    seconds = time.perf_counter() - t_start
    log(f"simulate: wrote {out} in {seconds:.1f} s (noise sigma {noise_sigma:.3g})")
    return SimulationResult(
        out_dir=out,
        optimisation_set_star=out / "optimisation_set.star",
        truth_optimisation_set_star=out / "truth" / "optimisation_set.star",
        errors_json=errors_json,
        tomo_names=tuple(json_tomos),
        n_particles=len(particle_rows),
        noise_sigma=noise_sigma,
        seconds=seconds,
    )
