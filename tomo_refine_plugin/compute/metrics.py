"""Accuracy metrics against a known truth.

:func:`reprojection_error` is the measure defined in ``shared/golden/README.md``: for every particle and
every tilt, project the particle's 3D position with the estimated geometry (projection matrix, plus the
estimated trajectory offset, plus the 2D deformation when present), do the same with the true geometry,
and take the 2D distance in pixels. A global rigid motion of the whole tomogram frame moves both the
particles and the projections and leaves the projections unchanged, so the measure is gauge-free without
any fitting.
"""
from __future__ import annotations

import numpy as np

from .errors import InputError
from .geometry import particle_positions_px, project_points
from .io.particles import ParticleSet, read_particle_set
from .io.star import parse_vector
from .io.tomograms import TomogramSet, read_tomogram_set
from .io.trajectories import TrajectorySet, read_trajectories

__all__ = ["reprojection_error", "projected_positions_px", "deformation_displacement_px"]


def _load(triple):
    if len(triple) != 3:
        raise ValueError("expected (tomograms_star, particles_star, motion_star or None)")
    tomograms, particles, motion = triple
    if not isinstance(tomograms, TomogramSet):
        tomograms = read_tomogram_set(tomograms)
    if not isinstance(particles, ParticleSet):
        particles = read_particle_set(particles)
    if motion is not None and not isinstance(motion, TrajectorySet):
        motion = read_trajectories(motion)
    return tomograms, particles, motion


def _hermite_basis(t):
    t2, t3 = t * t, t * t * t
    return np.stack([1 - 3 * t2 + 2 * t3, 3 * t2 - 2 * t3, t - 2 * t2 + t3, -t2 + t3], -1)


def deformation_displacement_px(uv, model: str, coefficients, grid_size, image_size_px) -> np.ndarray:
    """2D deformation of image positions, RELION's models (``relion_align.md`` §6).

    Parameters
    ----------
    uv
        ``(n, 2)`` image positions of one tilt (px).
    model
        ``'linear'``: ``(axx·r_x, axy·r_x + ayy·r_y)`` with ``r = uv − (W/2, H/2)``.
        ``'spline'``: bicubic Hermite surface on a ``gw×gh`` node grid spanning ``[0,W]×[0,H]``,
        coefficients laid out ``((dim·gh + y)·gw + x)·4 + {value, slope_x, slope_y, twist}``.
        ``'Fourier'``: ``Σ a cos(ω·u) + b sin(ω·u)``, ``ω = (iπ/W, jπ/H)``.
    coefficients
        1-D coefficient vector of this tilt.
    grid_size
        ``(gw, gh)``.

    Returns
    -------
    displacement
        float64 ``(n, 2)`` (px).
    """
    uv = np.asarray(uv, float)
    c = np.asarray(coefficients, float)
    w, h = image_size_px
    out = np.zeros_like(uv)
    if c.size == 0:
        return out
    kind = model.lower()
    if kind == "linear":
        r = uv - np.array([w / 2.0, h / 2.0])
        out[:, 0] = c[0] * r[:, 0]
        out[:, 1] = c[1] * r[:, 0] + c[2] * r[:, 1]
        return out
    gw, gh = int(grid_size[0]), int(grid_size[1])
    if kind == "spline":
        if c.size != 8 * gw * gh:
            raise ValueError(f"spline deformation needs {8 * gw * gh} coefficients for a {gw}x{gh} grid, got {c.size}")
        sx, sy = w / (gw - 1), h / (gh - 1)
        gx = np.clip(uv[:, 0] / sx, 0.0, gw - 1 - 1e-9)
        gy = np.clip(uv[:, 1] / sy, 0.0, gh - 1 - 1e-9)
        cx, cy = np.floor(gx).astype(int), np.floor(gy).astype(int)
        hx, hy = _hermite_basis(gx - cx), _hermite_basis(gy - cy)
        node = c.reshape(2, gh, gw, 4)
        for dim in range(2):
            n00, n10 = node[dim, cy, cx], node[dim, cy, cx + 1]
            n01, n11 = node[dim, cy + 1, cx], node[dim, cy + 1, cx + 1]
            # F = [[v00, v01, sy00, sy01], [v10, v11, sy10, sy11], [sx00, sx01, tw00, tw01], [sx10, sx11, tw10, tw11]]
            f = np.stack(
                [
                    np.stack([n00[:, 0], n01[:, 0], n00[:, 2], n01[:, 2]], -1),
                    np.stack([n10[:, 0], n11[:, 0], n10[:, 2], n11[:, 2]], -1),
                    np.stack([n00[:, 1], n01[:, 1], n00[:, 3], n01[:, 3]], -1),
                    np.stack([n10[:, 1], n11[:, 1], n10[:, 3], n11[:, 3]], -1),
                ],
                -2,
            )
            out[:, dim] = np.einsum("ni,nij,nj->n", hx, f, hy)
        return out
    if kind == "fourier":
        freqs = []
        for j in range(gh // 2):
            for i in range(0 if j > 0 else 1, gw // 2 + 1):
                freqs.append((i, j))
        for j in range(gh // 2, gh):
            for i in range(1, gw // 2 + 1):
                freqs.append((i, j - gh))
        n_freq = len(freqs)
        pairs = c[: 4 * n_freq].reshape(2, n_freq, 2)
        for k, (i, j) in enumerate(freqs):
            phase = np.pi * (i * uv[:, 0] / w + j * uv[:, 1] / h)
            for dim in range(2):
                out[:, dim] += pairs[dim, k, 0] * np.cos(phase) + pairs[dim, k, 1] * np.sin(phase)
        return out
    raise ValueError(f"unknown deformation model {model!r}")


def _deformation(tset: TomogramSet, name: str, n_tilts: int):
    row = tset.row(name)
    model = row.get("rlnTomoDeformationType") if "rlnTomoDeformationType" in row.index else None
    table = tset.tilt_table(name)
    if model is None or not isinstance(model, str) or "rlnTomoDeformationCoefficients" not in table.columns:
        return None
    grid = (int(row.get("rlnTomoDeformationGridSizeX", 1)), int(row.get("rlnTomoDeformationGridSizeY", 1)))
    coefficients = [parse_vector(v) for v in table["rlnTomoDeformationCoefficients"]]
    return model, grid, coefficients


def projected_positions_px(tomograms: TomogramSet, particles: ParticleSet, motion, name: str, particle_names):
    """Image positions of the named particles of tomogram ``name`` in every tilt, float64 ``(n, n_tilts, 2)``.

    Static position (``rlnCenteredCoordinate`` + origin, :func:`.particle_positions_px`), plus the
    trajectory offset when ``motion`` is given, projected with the tomogram's matrices, plus its 2D
    deformation when the tomogram set carries one.
    """
    geometry = tomograms.geometry(name)
    rows = particles.for_tomogram(name)
    rows = rows.set_index(rows["rlnTomoParticleName"].astype(str), drop=False).loc[list(particle_names)]
    pix = geometry.pixel_size_angst
    positions = particle_positions_px(
        particles.centred_angst(rows, geometry.tomo_size_px, pix),
        pix,
        geometry.tomo_size_px,
        particles.origins_angst(rows),
        particles.subtomo_matrices(rows),
    )
    points = np.repeat(positions[:, None, :], geometry.n_tilts, axis=1)
    if motion is not None:
        points = points + motion.for_particles(particle_names, geometry.n_tilts) / pix
    uv = project_points(geometry.projection_matrices(), points)
    deformation = _deformation(tomograms, name, geometry.n_tilts)
    if deformation is not None:
        model, grid, coefficients = deformation
        for f in range(geometry.n_tilts):
            uv[:, f] += deformation_displacement_px(uv[:, f], model, coefficients[f], grid, geometry.image_size_px)
    return uv


def reprojection_error(estimated, truth) -> dict:
    """Reprojection error of an estimate against the truth (``shared/golden/README.md``).

    Parameters
    ----------
    estimated, truth
        ``(tomograms_star, particles_star, motion_star or None)``; each entry a path or an already
        loaded :class:`TomogramSet` / :class:`ParticleSet` / :class:`TrajectorySet`. Relative paths
        inside the STAR files are resolved like RELION (from the cwd), then beside the STAR file.
        Particles are matched by ``rlnTomoParticleName``; particles missing from the estimate are skipped.

    Returns
    -------
    dict
        ``rms_px``, ``median_px``, ``max_px`` over all particle-tilts; ``per_tilt_rms_px``:
        ``{tomo name: float64 (n_tilts,)}``; ``per_particle_rms_px``: ``{tomo name: float64 (n,)}``;
        ``n``: number of particle-tilts.
    """
    est_t, est_p, est_m = _load(estimated)
    true_t, true_p, true_m = _load(truth)
    distances, per_tilt, per_particle = [], {}, {}
    for name in true_t.names():
        if name not in est_t.names():
            raise InputError(f"tomogram {name} of the truth is missing from the estimate", path=est_t.path,
                             field="data_global/rlnTomoName", fix="compare the same dataset")
        true_names = [str(v) for v in true_p.for_tomogram(name)["rlnTomoParticleName"]]
        if not true_names:
            continue
        est_names = {str(v) for v in est_p.for_tomogram(name)["rlnTomoParticleName"]}
        names = [n for n in true_names if n in est_names]
        if not names:
            continue
        if est_t.n_tilts(name) != true_t.n_tilts(name):
            raise InputError(f"tomogram {name}: the estimate has {est_t.n_tilts(name)} tilts, the truth "
                             f"{true_t.n_tilts(name)}", path=est_t.path, field=f"data_{name}",
                             fix="compare the same dataset")
        uv_est = projected_positions_px(est_t, est_p, est_m, name, names)
        uv_true = projected_positions_px(true_t, true_p, true_m, name, names)
        d = np.linalg.norm(uv_est - uv_true, axis=-1)  # (n, n_tilts)
        distances.append(d.ravel())
        per_tilt[name] = np.sqrt(np.mean(d**2, axis=0))
        per_particle[name] = np.sqrt(np.mean(d**2, axis=1))
    if not distances:
        raise InputError("no particle of the truth is in the estimate", path=est_p.path,
                         field="data_particles/rlnTomoParticleName", fix="compare the same dataset")
    d = np.concatenate(distances)
    return {
        "rms_px": float(np.sqrt(np.mean(d**2))),
        "median_px": float(np.median(d)),
        "max_px": float(np.max(d)),
        "per_tilt_rms_px": per_tilt,
        "per_particle_rms_px": per_particle,
        "n": int(d.size),
    }
