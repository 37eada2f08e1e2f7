"""The particle and tomogram sets a program reads from its optimisation set, checked against each other."""
from __future__ import annotations

from .optimisation_set import OptimisationSet
from .particles import (
    ParticleSet,
    check_optics_match,
    check_particles_against_tomograms,
    fill_optics_from_tomograms,
    read_particle_set,
)
from .tomograms import TomogramSet, read_tomogram_set

__all__ = ["read_particles_and_tomograms"]


def read_particles_and_tomograms(oset: OptimisationSet) -> tuple[TomogramSet, ParticleSet]:
    """Read ``--p`` and ``--t`` (or their ``--i`` entries) as every program needs them.

    A particle set without an optics table gets one from the tomograms; a particle whose tomogram is not
    in the set, or optics that disagree with the tomograms (``Tomogram::validateParticleOptics``), raise
    an :class:`~..errors.InputError` naming the file and column.
    """
    oset.require("particles", "--p")
    oset.require("tomograms", "--t")
    tset = read_tomogram_set(oset.resolved("tomograms"))
    pset = read_particle_set(oset.resolved("particles"))
    if pset.optics_generated:
        pset = fill_optics_from_tomograms(pset, tset)
    check_particles_against_tomograms(pset, tset)
    check_optics_match(pset, tset)
    return tset, pset
