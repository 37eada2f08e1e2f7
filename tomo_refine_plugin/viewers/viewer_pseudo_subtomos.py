"""Viewer of pseudo-subtomograms: central slices of the data, CTF² and multiplicity of one particle."""
from __future__ import annotations

import os

import numpy as np
from pyworkflow.protocol import params
from pyworkflow.viewer import DESKTOP_TKINTER, ProtocolViewer

from ..objects import TomoRefineSetOfPseudoSubtomograms
from ..protocols import ProtTomoRefinePseudoSubtomos


def _weights_path(data_path):
    for suffix in ("_data.mrc", "_stack2d.mrcs"):
        if data_path.endswith(suffix):
            return data_path[: -len(suffix)] + "_weights.mrc"
    return None


def half_grid_to_full_centred(half, box):
    """A Hermitian half-grid ``(s, s, s//2+1)`` with DC at index 0 (FFT order) → the full ``(s, s, s)``
    volume with DC at ``s//2`` on every axis (for display)."""
    h = np.asarray(half, np.float32)
    full = np.zeros((box, box, box), np.float32)
    full[:, :, : box // 2 + 1] = h
    mirrored = np.roll(np.flip(h, axis=(0, 1)), 1, axis=(0, 1))  # h[-z, -y, kx]
    for kx in range(1, (box + 1) // 2):
        full[:, :, box - kx] = mirrored[:, :, kx]
    return np.fft.fftshift(full)


def pseudo_subtomo_volumes(data_path, ctf_path=None):
    """{label: (z, y, x)} for one pseudo-subtomogram: data (real space), and when a weights file exists
    its CTF² and multiplicity (Fourier space, DC at the centre). RELION's ``_weights.mrc`` is
    ``(2s, s, s//2+1)``: CTF² for z < s, multiplicity for z ≥ s, both unshifted half-grids."""
    from ..compute.io.mrc import read_mrc

    data, _ = read_mrc(data_path)
    volumes = {"data": np.asarray(data, np.float32)}
    weights_path = ctf_path if ctf_path and os.path.exists(ctf_path) else _weights_path(data_path)
    if weights_path and os.path.exists(weights_path):
        w, _ = read_mrc(weights_path)
        w = np.asarray(w, np.float32)
        n = volumes["data"].shape[-1]
        if w.ndim == 3 and w.shape == (2 * n, n, n // 2 + 1):
            volumes["CTF²"] = half_grid_to_full_centred(w[:n], n)
            volumes["multiplicity"] = half_grid_to_full_centred(w[n:], n)
        elif w.ndim == 3 and w.shape == (n, n, n // 2 + 1):
            volumes["CTF²"] = half_grid_to_full_centred(w, n)
    return volumes


def pseudo_subtomo_figure(item, fig=None):
    """Central-slice figure of one :class:`TomoRefinePseudoSubtomogram` (its data and weights files)."""
    from ..compute.plots_projection import plot_central_slices

    return plot_central_slices(pseudo_subtomo_volumes(item.getFileName(), item.getCtfFile()),
                               title=item.getRelionParticleName() or "", fig=fig)


class TomoRefinePseudoSubtomoViewer(ProtocolViewer):
    """Central slices of data / CTF² / multiplicity of a chosen pseudo-subtomogram."""

    _label = "tomo-refine pseudo-subtomogram viewer"
    _targets = [ProtTomoRefinePseudoSubtomos, TomoRefineSetOfPseudoSubtomograms]
    _environments = [DESKTOP_TKINTER]

    def _defineParams(self, form):
        form.addSection(label="Visualization")
        form.addParam("particleNumber", params.IntParam, default=1, label="Particle (1-based, set order)")
        form.addParam("displaySlices", params.LabelParam, label="Central slices")

    def _getVisualizeDict(self):
        return {"displaySlices": lambda p: [self.plotter()]}

    def _set(self):
        obj = self.protocol
        if isinstance(obj, TomoRefineSetOfPseudoSubtomograms):
            return obj
        return getattr(obj, "pseudoSubtomograms")

    def plotter(self, number=None):
        from pwem.viewers import EmPlotter

        k = number or (self.particleNumber.get() if hasattr(self, "particleNumber") else 1) or 1
        for i, item in enumerate(self._set().iterItems(orderBy="id")):
            if i + 1 == k:
                plotter = EmPlotter(windowTitle="pseudo-subtomogram")
                pseudo_subtomo_figure(item.clone(), fig=plotter.getFigure())
                return plotter
        raise ValueError(f"no particle number {k}")
