"""Viewer of a tilt-series refinement: per-tilt report, trajectories, projected particles on a tilt image.

The figures come from :mod:`..compute.plots_projection`; this module only finds the run's files
(``extra/in_tomograms.star`` = before, ``extra/tomograms.star`` = after, the same for particles) and
turns them into arrays. :func:`align_figure` is what the viewer and the tests call.
"""
from __future__ import annotations

import os

import numpy as np
from pyworkflow.protocol import params
from pyworkflow.viewer import DESKTOP_TKINTER, ProtocolViewer

from .. import constants as C
from ..objects import TomoRefineAlignReport
from ..protocols import ProtTomoRefineAlign

FIGURES = ("report", "trajectories", "projected")


def _positions_px(pset, rows, tset, name):
    from ..compute.geometry import particle_positions_px

    pix = tset.pixel_size_angst(name)
    size = tset.tomo_size_px(name)
    return particle_positions_px(pset.centred_angst(rows, size, pix), pix, size,
                                 pset.origins_angst(rows), pset.subtomo_matrices(rows))


def projections_before_after(extra_dir, ts_id):
    """uv ``(n_particles, n_tilts, 2)`` before and after refinement, the tilt table (before), and the
    per-tilt geometries (before, after) of tomogram ``ts_id``."""
    from ..compute.geometry import project_points
    from ..compute.io.particles import read_particle_set
    from ..compute.io.tomograms import read_tomogram_set

    t0 = read_tomogram_set(os.path.join(extra_dir, C.IN_TOMOGRAMS_STAR))
    t1 = read_tomogram_set(os.path.join(extra_dir, C.OUT_TOMOGRAMS_STAR))
    p0 = read_particle_set(os.path.join(extra_dir, C.IN_PARTICLES_STAR))
    p1 = read_particle_set(os.path.join(extra_dir, C.OUT_PARTICLES_STAR))
    g0, g1 = t0.geometry(ts_id), t1.geometry(ts_id)
    r0, r1 = p0.for_tomogram(ts_id), p1.for_tomogram(ts_id)
    names1 = list(r1["rlnTomoParticleName"].astype(str))
    r0 = r0.set_index(r0["rlnTomoParticleName"].astype(str)).loc[names1].reset_index(drop=True)
    uv0 = project_points(g0.projection_matrices(), _positions_px(p0, r0, t0, ts_id))
    uv1 = project_points(g1.projection_matrices(), _positions_px(p1, r1.reset_index(drop=True), t1, ts_id))
    return uv0, uv1, t0, g0, g1


def _report_cc(extra_dir, ts_id, n_tilts):
    """(cc_before, cc_after) per tilt from the engine's ``report/align_report.star`` (table = tomogram
    name), else (None, None)."""
    from ..compute.io.star import read_star

    path = os.path.join(extra_dir, "report", "align_report.star")
    if not os.path.exists(path):
        return None, None
    table = read_star(path).get(ts_id)
    if table is None or not hasattr(table, "columns") or len(table) != n_tilts:
        return None, None
    before = table["tomoRefineCcBefore"].to_numpy(float) if "tomoRefineCcBefore" in table else None
    after = table["tomoRefineCcAfter"].to_numpy(float) if "tomoRefineCcAfter" in table else None
    if before is not None and np.all(np.isnan(before)):
        before = None
    return before, after


def align_figure(extra_dir, ts_id, kind, tilt_index=None, fig=None):
    """The figure ``kind`` ("report", "trajectories" or "projected") for tomogram ``ts_id``.

    ``tilt_index`` (0-based, tilt-table order) is the image for "projected"; default: lowest |tilt|.
    """
    from ..compute import plots_projection as plots

    uv0, uv1, t0, g0, g1 = projections_before_after(extra_dir, ts_id)
    if kind == "report":
        cc0, cc1 = _report_cc(extra_dir, ts_id, g0.n_tilts)
        shift_change = np.linalg.norm(np.asarray(g1.shift_angst) - np.asarray(g0.shift_angst), axis=1)
        changes = {
            "ΔXTilt (°)": g1.x_tilt_deg - g0.x_tilt_deg,
            "ΔYTilt (°)": g1.y_tilt_deg - g0.y_tilt_deg,
            "ΔZRot (°)": g1.z_rot_deg - g0.z_rot_deg,
            "|Δshift| (Å)": shift_change,
            "mean particle move (px)": np.linalg.norm(uv1 - uv0, axis=2).mean(axis=0),
        }
        return plots.plot_per_tilt_report(g0.y_tilt_deg, cc0, cc1, changes, title=ts_id, fig=fig)
    if kind == "trajectories":
        order = np.argsort(t0.optics(ts_id).pre_exposure_e_per_angst2, kind="stable")
        return plots.plot_trajectories(uv0, uv1, scales=(1, 8), frame_order=order, title=ts_id, fig=fig)
    if kind == "projected":
        from ..compute.io.mrc import read_mrc_slices
        from ..compute.io.tomograms import split_image_name

        k = int(np.argmin(np.abs(g0.y_tilt_deg))) if tilt_index is None else int(tilt_index)
        section, path = split_image_name(t0.tilt_table(ts_id)["rlnMicrographName"].iloc[k])
        image = read_mrc_slices(path, [section or 0])[0]
        return plots.plot_projected_particles(image, uv0[:, k], uv1[:, k],
                                              title=f"{ts_id} tilt {g0.y_tilt_deg[k]:.1f}°", fig=fig)
    raise ValueError(f"kind must be one of {FIGURES}, got {kind!r}")


class TomoRefineAlignViewer(ProtocolViewer):
    """Per-tilt report, ×1/×8 trajectories and projected particles of a tilt-series refinement."""

    _label = "tomo-refine alignment viewer"
    _targets = [ProtTomoRefineAlign, TomoRefineAlignReport]
    _environments = [DESKTOP_TKINTER]

    def _defineParams(self, form):
        form.addSection(label="Visualization")
        form.addParam("tsId", params.StringParam, default="", label="Tilt series (tsId)",
                      help="Empty: the first refined tilt series.")
        form.addParam("tiltIndex", params.IntParam, default=-1, label="Tilt image (0-based, -1: lowest tilt)")
        form.addParam("displayReport", params.LabelParam, label="Per-tilt report")
        form.addParam("displayTrajectories", params.LabelParam, label="Trajectories (×1 and ×8)")
        form.addParam("displayProjected", params.LabelParam, label="Projected particles before/after")

    def _getVisualizeDict(self):
        return {"displayReport": lambda p: self._show("report"),
                "displayTrajectories": lambda p: self._show("trajectories"),
                "displayProjected": lambda p: self._show("projected")}

    def _extraDir(self):
        obj = self.protocol  # the protocol, or the report object when the viewer was opened on the output
        if isinstance(obj, TomoRefineAlignReport):
            return os.path.dirname(os.path.normpath(obj.getReportDir()))
        return obj._getExtraPath()

    def firstTsId(self):
        from ..compute.io.tomograms import read_tomogram_set

        return read_tomogram_set(os.path.join(self._extraDir(), C.OUT_TOMOGRAMS_STAR)).names()[0]

    def plotter(self, kind):
        """An EmPlotter holding the figure ``kind`` (what the GUI shows; tests call ``savefig``)."""
        from pwem.viewers import EmPlotter

        plotter = EmPlotter(windowTitle=f"tomo-refine {kind}")
        ts_id = self.tsId.get() if hasattr(self, "tsId") and self.tsId.get() else self.firstTsId()
        tilt = self.tiltIndex.get() if hasattr(self, "tiltIndex") and self.tiltIndex.get() is not None else -1
        align_figure(self._extraDir(), ts_id, kind, None if tilt < 0 else tilt, fig=plotter.getFigure())
        return plotter

    def _show(self, kind):
        return [self.plotter(kind)]
