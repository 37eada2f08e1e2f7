"""Particle trajectories (``motion.star``): a 3D shift per particle and tilt, in Å.

Layout: ``data_general`` with ``rlnParticleNumber``, then one loop table per particle named after its
``rlnTomoParticleName`` (``data_TS_01/7``) with ``rlnOrigin{X,Y,Z}Angst`` per tilt, in tilt-table order.
The shift is added to the particle's static position (``traj_f = p + shift_f/pix``).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import InputError
from .star import read_star, require_columns, write_star

__all__ = ["TrajectorySet", "read_trajectories", "write_trajectories"]

_SHIFT_COLUMNS = ("rlnOriginXAngst", "rlnOriginYAngst", "rlnOriginZAngst")


@dataclass
class TrajectorySet:
    """Per-particle trajectories.

    Attributes
    ----------
    shifts_angst
        ``rlnTomoParticleName`` → float64 ``(n_tilts, 3)`` (x, y, z) shift in Å, tilt-table order;
        insertion order is file order.
    positional
        True for old files whose tables are unnamed (``data_0``, ``data_1``...): they are matched to the
        particles by position, not by name.
    path
        The file it came from.
    """

    shifts_angst: dict
    positional: bool = False
    path: Path | None = None
    general: dict = field(default_factory=dict)

    def names(self) -> list[str]:
        return list(self.shifts_angst)

    def for_particles(self, names, n_tilts: int) -> np.ndarray:
        """Shifts of the named particles, float64 ``(n, n_tilts, 3)``; zeros for particles without one.

        Raises
        ------
        InputError
            A trajectory whose length is not ``n_tilts`` (RELION's ``checkTrajectoryLengths``).
        """
        if self.positional:
            raise InputError(
                "the trajectory tables are unnamed (data_0, data_1...) and cannot be matched by particle name",
                path=self.path,
                field="data_0",
                fix="read it with read_trajectories(path, particle_names=<all particle names in file order>)",
            )
        names = [str(n) for n in names]
        out = np.zeros((len(names), n_tilts, 3))
        for i, name in enumerate(names):
            s = self.shifts_angst.get(name)
            if s is None:
                continue
            if s.shape[0] != n_tilts:
                raise InputError(
                    f"trajectory of {name} has {s.shape[0]} frames but the tilt series has {n_tilts}",
                    path=self.path,
                    field=f"data_{name}",
                    fix="use the motion.star made for this tomogram set",
                )
            out[i] = s
        return out

    def subset(self, names) -> "TrajectorySet":
        keep = {str(n) for n in names}
        return TrajectorySet({k: v for k, v in self.shifts_angst.items() if k in keep}, self.positional, self.path,
                             dict(self.general))


def read_trajectories(path, particle_names=None) -> TrajectorySet:
    """Read ``motion.star``.

    Parameters
    ----------
    particle_names
        For old files whose first per-particle table is named ``0``: the particle names, in particle
        file order, to match the tables to by position (with a warning). Without it the tables keep
        their numeric names and ``positional`` is set.
    """
    path = Path(path)
    blocks = read_star(path)
    general = blocks.get("general", {})
    if isinstance(general, pd.DataFrame):
        general = general.iloc[0].to_dict() if len(general) else {}
    tables = [(k, v) for k, v in blocks.items() if k != "general"]
    positional = bool(tables) and tables[0][0] == "0"
    if positional:
        warnings.warn(f"{path}: trajectory tables are unnamed; matching them to particles by position", stacklevel=2)
        if particle_names is not None:
            names = [str(n) for n in particle_names]
            if len(names) < len(tables):
                raise InputError(f"{len(tables)} trajectories but only {len(names)} particles", path=path,
                                 field="data_0", fix="use the motion.star made for this particle set")
            tables = [(names[i], v) for i, (_, v) in enumerate(tables)]
    shifts = {}
    for name, table in tables:
        if isinstance(table, dict):
            table = pd.DataFrame({k: [v] for k, v in table.items()})
        require_columns(table, _SHIFT_COLUMNS, path, name)
        shifts[str(name)] = table[list(_SHIFT_COLUMNS)].to_numpy(np.float64)
    if "rlnParticleNumber" in general and int(general["rlnParticleNumber"]) != len(shifts):
        warnings.warn(f"{path}: rlnParticleNumber is {general['rlnParticleNumber']} but there are {len(shifts)} "
                      "trajectory tables", stacklevel=2)
    return TrajectorySet(shifts_angst=shifts, positional=positional and particle_names is None, path=path,
                         general=dict(general))


def write_trajectories(tset: TrajectorySet, path) -> None:
    """Write ``motion.star`` atomically (``data_general`` then one table per particle)."""
    general = dict(tset.general)
    general["rlnParticleNumber"] = len(tset.shifts_angst)
    blocks = {"general": general}
    for name, s in tset.shifts_angst.items():
        s = np.asarray(s, dtype=np.float64).reshape(-1, 3)
        blocks[str(name)] = pd.DataFrame({c: s[:, i] for i, c in enumerate(_SHIFT_COLUMNS)})
    write_star(blocks, path)
