"""Optimisation sets (``optimisation_set.star``): one unnamed list table ``data_`` naming the inputs.

The labels end in "File" (``rlnTomoParticlesFile``...). Paths are kept as written (relative to the
directory RELION runs in); explicit command-line arguments override the entries, as in RELION.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd

from ..errors import InputError
from .star import read_star, write_star
from .tomograms import resolve_path, search_dirs

__all__ = ["OptimisationSet", "read_optimisation_set", "write_optimisation_set", "resolve_inputs", "LABELS"]

LABELS = {
    "particles": "rlnTomoParticlesFile",
    "tomograms": "rlnTomoTomogramsFile",
    "trajectories": "rlnTomoTrajectoriesFile",
    "manifolds": "rlnTomoManifoldsFile",
    "reference_map1": "rlnTomoReferenceMap1File",
    "reference_map2": "rlnTomoReferenceMap2File",
    "reference_mask": "rlnTomoReferenceMaskFile",
    "reference_fsc": "rlnTomoReferenceFscFile",
}


@dataclass(frozen=True)
class OptimisationSet:
    """The file names an optimisation set holds (None when absent)."""

    particles: str | None = None
    tomograms: str | None = None
    trajectories: str | None = None
    manifolds: str | None = None
    reference_map1: str | None = None
    reference_map2: str | None = None
    reference_mask: str | None = None
    reference_fsc: str | None = None
    path: Path | None = None

    def resolved(self, entry: str) -> Path | None:
        """The entry as an existing path: relative to the cwd (as RELION), else to this file's folder or its
        parents; the entry as given when nothing exists (the reader then reports it)."""
        value = getattr(self, entry)
        if not value:
            return None
        bases = search_dirs(self.path) if self.path is not None else ()
        found = resolve_path(value, bases)
        return found if found is not None else Path(value)

    def require(self, entry: str, flag: str) -> str:
        """The entry's value, or an :class:`InputError` naming the missing input and its flag."""
        value = getattr(self, entry)
        if not value:
            raise InputError(
                f"no {entry.replace('_', ' ')} given",
                path=self.path,
                field=LABELS[entry],
                fix=f"pass {flag} or add {LABELS[entry]} to the optimisation set (--i)",
            )
        return value


def read_optimisation_set(path) -> OptimisationSet:
    """Read ``optimisation_set.star`` (the first table; unknown labels are ignored)."""
    path = Path(path)
    blocks = read_star(path)
    if not blocks:
        raise InputError("no table in optimisation set", path=path, field="data_",
                         fix="write the file names as a data_ list table")
    block = blocks[""] if "" in blocks else next(iter(blocks.values()))
    if isinstance(block, pd.DataFrame):
        block = block.iloc[0].to_dict() if len(block) else {}
    values = {}
    for entry, label in LABELS.items():
        v = block.get(label)
        values[entry] = None if v is None or (isinstance(v, float) and pd.isna(v)) or str(v) == "" else str(v)
    return OptimisationSet(**values, path=path)


def write_optimisation_set(oset: OptimisationSet, path) -> None:
    """Write the set entries that are not None as a ``data_`` list table, atomically."""
    block = {LABELS[e]: str(getattr(oset, e)) for e in LABELS if getattr(oset, e)}
    write_star({"": block}, path)


def resolve_inputs(i=None, p=None, t=None, mot=None, ref1=None, ref2=None, mask=None, fsc=None,
                   man=None) -> OptimisationSet:
    """The inputs of a run: ``--i`` entries, each overridden by its explicit flag when given."""
    base = read_optimisation_set(i) if i else OptimisationSet()
    overrides = {
        "particles": p,
        "tomograms": t,
        "trajectories": mot,
        "manifolds": man,
        "reference_map1": ref1,
        "reference_map2": ref2,
        "reference_mask": mask,
        "reference_fsc": fsc,
    }
    return replace(base, **{k: str(v) for k, v in overrides.items() if v})
