"""RELION 5 file I/O: STAR tables, tomogram sets, particle sets, trajectories, optimisation sets, FSC, MRC.

Every reader keeps unknown columns, row order and exact values, so a read followed by a write gives
back the same tables; every writer is atomic.
"""
from .atomic import atomic_path, atomic_write_text
from .note import command_line, write_note
from .fsc import read_fsc, write_fsc
from .inputs import read_particles_and_tomograms
from .mrc import read_mrc, read_mrc_header_shape, read_mrc_slices, read_mrc_voxel_size, write_mrc
from .optimisation_set import OptimisationSet, read_optimisation_set, resolve_inputs, write_optimisation_set
from .particles import (
    ParticleSet,
    check_optics_match,
    check_particles_against_tomograms,
    fill_optics_from_tomograms,
    read_particle_set,
    write_particle_set,
)
from .star import format_vector, parse_vector, read_star, require_columns, require_table, star_to_text, write_star
from .tomograms import (
    TomogramSet,
    load_tilt_series,
    read_tomogram_set,
    resolve_path,
    search_dirs,
    split_image_name,
    write_tomogram_set,
)
from .trajectories import TrajectorySet, read_trajectories, write_trajectories

__all__ = [
    "atomic_path",
    "atomic_write_text",
    "command_line",
    "write_note",
    "read_particles_and_tomograms",
    "read_star",
    "write_star",
    "star_to_text",
    "require_table",
    "require_columns",
    "parse_vector",
    "format_vector",
    "TomogramSet",
    "read_tomogram_set",
    "write_tomogram_set",
    "load_tilt_series",
    "resolve_path",
    "search_dirs",
    "split_image_name",
    "ParticleSet",
    "read_particle_set",
    "write_particle_set",
    "check_particles_against_tomograms",
    "check_optics_match",
    "fill_optics_from_tomograms",
    "TrajectorySet",
    "read_trajectories",
    "write_trajectories",
    "OptimisationSet",
    "read_optimisation_set",
    "write_optimisation_set",
    "resolve_inputs",
    "read_mrc",
    "write_mrc",
    "read_mrc_header_shape",
    "read_mrc_voxel_size",
    "read_mrc_slices",
    "read_fsc",
    "write_fsc",
]
