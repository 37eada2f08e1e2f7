"""Viewer of pseudo-subtomograms: central slices of data, CTF² and multiplicity (or, for 2D stacks, the
first/middle/last images), drawn by the engine's :func:`..compute.plots.subtomo_slices_figure`."""
from __future__ import annotations

from pyworkflow.protocol import params
from pyworkflow.viewer import DESKTOP_TKINTER, ProtocolViewer

from ..objects import TomoRefineSetOfPseudoSubtomograms
from ..protocols import ProtTomoRefinePseudoSubtomos


class TomoRefinePseudoSubtomoViewer(ProtocolViewer):
    """Central slices of the first pseudo-subtomograms of a set (one row per particle)."""

    _label = "tomo-refine pseudo-subtomogram viewer"
    _targets = [ProtTomoRefinePseudoSubtomos, TomoRefineSetOfPseudoSubtomograms]
    _environments = [DESKTOP_TKINTER]

    def _defineParams(self, form):
        form.addSection(label="Visualization")
        form.addParam("numberOfParticles", params.IntParam, default=4, validators=[params.GE(1)],
                      label="Particles to show", help="The first particles of the set's particles.star.")
        form.addParam("displaySlices", params.LabelParam, label="Central slices")

    def _getVisualizeDict(self):
        return {"displaySlices": lambda p: [self.plotter()]}

    def _set(self):
        obj = self.protocol  # the protocol, or the set when the viewer was opened on the output
        if hasattr(obj, "getParticlesStar"):  # our set, or reliontomo's (where reliontomo is installed)
            return obj
        return getattr(obj, "pseudoSubtomograms")

    def plotter(self, n_particles=None):
        """An EmPlotter holding the figure (what the GUI shows; tests call ``savefig``)."""
        from pwem.viewers import EmPlotter

        from ..compute.plots import subtomo_slices_figure

        n = n_particles or (self.numberOfParticles.get() if hasattr(self, "numberOfParticles") else 4) or 4
        fig = subtomo_slices_figure(self._set().getParticlesStar(), n_particles=int(n))
        return EmPlotter(figure=fig, windowTitle="pseudo-subtomograms")
