"""Figures of projected particles and of per-tilt refinement changes (matplotlib imported lazily).

Every function takes plain arrays and returns a ``matplotlib.figure.Figure`` without showing it, so
viewers, the CLI and tests draw the same picture (tests save it with the Agg backend).
"""
from __future__ import annotations

import numpy as np

from .geometry import particle_positions_px, project_points

__all__ = [
    "projected_particles_px",
    "plot_projected_particles",
    "plot_trajectories",
    "plot_per_tilt_report",
]


def _figure(figsize, fig=None):
    """A new Agg-safe Figure, or ``fig`` cleared (viewers pass their pyplot-managed figure)."""
    if fig is not None:
        fig.clear()
        return fig
    from matplotlib.figure import Figure

    return Figure(figsize=figsize, dpi=100)


def projected_particles_px(geometry, centred_angst) -> np.ndarray:
    """Image positions ``(n_particles, n_tilts, 2)`` float64 (u, v px) of particles under ``geometry``.

    Parameters
    ----------
    geometry
        :class:`.geometry.TiltSeriesGeometry`.
    centred_angst
        ``(n_particles, 3)`` ``rlnCenteredCoordinate*Angst`` (offsets already applied).
    """
    positions = particle_positions_px(centred_angst, geometry.pixel_size_angst, geometry.tomo_size_px)
    return project_points(geometry.projection_matrices(), positions)


def plot_projected_particles(image, uv_before, uv_after=None, title="", box_px=None, fig=None):
    """One tilt image with the particles' projected positions before (○) and after (+) refinement.

    Parameters
    ----------
    image
        ``(H, W)`` float tilt image (y, x).
    uv_before, uv_after
        ``(n_particles, 2)`` (u, v) px, 0-based pixel indices; ``uv_after`` may be None.
    box_px
        If given, a square of this size is drawn around each refined (or original) position.
    """
    from matplotlib.patches import Rectangle

    image = np.asarray(image, dtype=np.float32)
    fig = _figure((6, 6 * image.shape[0] / max(image.shape[1], 1) + 0.4), fig)
    ax = fig.add_subplot(111)
    lo, hi = np.percentile(image, [1, 99])
    ax.imshow(image, cmap="gray", origin="lower", vmin=lo, vmax=hi, interpolation="nearest")
    b = np.asarray(uv_before, float).reshape(-1, 2)
    ax.scatter(b[:, 0], b[:, 1], s=40, facecolors="none", edgecolors="tab:orange", label="before")
    ref = b
    if uv_after is not None:
        a = np.asarray(uv_after, float).reshape(-1, 2)
        ax.scatter(a[:, 0], a[:, 1], s=40, marker="+", color="tab:cyan", label="after")
        for p, q in zip(b, a):
            ax.plot([p[0], q[0]], [p[1], q[1]], color="yellow", lw=0.8)
        ref = a
    if box_px:
        for u, v in ref:
            ax.add_patch(Rectangle((u - box_px / 2, v - box_px / 2), box_px, box_px, fill=False, lw=0.5,
                                   color="tab:cyan"))
    ax.set_xlim(-0.5, image.shape[1] - 0.5)
    ax.set_ylim(-0.5, image.shape[0] - 0.5)
    ax.set_xlabel("x (px)")
    ax.set_ylabel("y (px)")
    ax.set_title(title)
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    return fig


def plot_trajectories(uv_before, uv_after, scales=(1, 8), frame_order=None, title="", fig=None):
    """Per-particle 2D tracks of the refinement's displacement over the tilts, magnified.

    For particle ``i`` and tilt ``f`` the track point is ``anchor_i + scale·(after_if − before_if)``,
    anchored at the particle's mean projected position; the tilts are joined in ``frame_order``
    (chronological, e.g. by pre-exposure). This shows placement and registration changes (no motion).

    Parameters
    ----------
    uv_before, uv_after
        ``(n_particles, n_tilts, 2)`` px.
    scales
        One panel per magnification.
    frame_order
        ``(n_tilts,)`` int, the order in which tilts are joined (default: table order).
    """
    before = np.asarray(uv_before, float)
    after = np.asarray(uv_after, float)
    order = np.arange(before.shape[1]) if frame_order is None else np.asarray(frame_order, int)
    fig = _figure((5 * len(scales), 5), fig)
    anchor = before.mean(axis=1)
    delta = (after - before)[:, order]
    for k, scale in enumerate(scales):
        ax = fig.add_subplot(1, len(scales), k + 1)
        for i in range(before.shape[0]):
            track = anchor[i] + scale * delta[i]
            ax.plot(track[:, 0], track[:, 1], lw=0.8)
            ax.plot(track[-1, 0], track[-1, 1], "k.", ms=3)
        ax.scatter(anchor[:, 0], anchor[:, 1], s=8, color="k")
        ax.set_aspect("equal")
        ax.set_title(f"{title} ×{scale:g}".strip())
        ax.set_xlabel("x (px)")
        ax.set_ylabel("y (px)")
    fig.tight_layout()
    return fig


def plot_per_tilt_report(tilt_angle_deg, cc_before=None, cc_after=None, changes=None, title="", fig=None):
    """CC before/after and parameter changes per tilt.

    Parameters
    ----------
    tilt_angle_deg
        ``(n_tilts,)``.
    cc_before, cc_after
        ``(n_tilts,)`` or None.
    changes
        {label: ``(n_tilts,)``} parameter changes (e.g. ``"ΔZRot (°)"``, ``"shift change (Å)"``).
    """
    tilt = np.asarray(tilt_angle_deg, float)
    changes = changes or {}
    n_panels = (1 if cc_before is not None or cc_after is not None else 0) + len(changes)
    fig = _figure((7, 2.4 * max(n_panels, 1) + 0.4), fig)
    k = 1
    order = np.argsort(tilt, kind="stable")
    if cc_before is not None or cc_after is not None:
        ax = fig.add_subplot(max(n_panels, 1), 1, k)
        if cc_before is not None:
            ax.plot(tilt[order], np.asarray(cc_before, float)[order], "o-", ms=3, label="before")
        if cc_after is not None:
            ax.plot(tilt[order], np.asarray(cc_after, float)[order], "s-", ms=3, label="after")
        ax.set_ylabel("CC")
        ax.legend(fontsize=8)
        ax.set_title(title)
        k += 1
    for label, values in changes.items():
        ax = fig.add_subplot(max(n_panels, 1), 1, k)
        ax.bar(tilt, np.asarray(values, float), width=max(np.min(np.diff(np.sort(tilt))) * 0.8, 0.5)
               if tilt.size > 1 else 1.0)
        ax.axhline(0, color="k", lw=0.5)
        ax.set_ylabel(label)
        k += 1
    if n_panels:
        fig.axes[-1].set_xlabel("tilt angle (°)")
    fig.tight_layout()
    return fig

