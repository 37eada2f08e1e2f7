"""RELION particle sets (``particles.star``): ``data_general``, ``data_optics`` and ``data_particles``.

Positions are ``rlnCenteredCoordinate{X,Y,Z}Angst`` (Å from the tomogram centre ``size/2``) or the
RELION 4 ``rlnCoordinate{X,Y,Z}`` (decentred unbinned px). Every column and the row order are kept;
``rlnTomoParticleName`` is generated as ``<tomo>/<k>`` (k 1-based per tomogram, file order) when absent.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from ..conventions import euler_zyz_to_matrix, tomogram_centre_px
from ..errors import InputError
from .star import parse_vector, read_star, require_columns, require_table, write_star

__all__ = [
    "ParticleSet",
    "read_particle_set",
    "write_particle_set",
    "check_particles_against_tomograms",
    "check_optics_match",
    "fill_optics_from_tomograms",
    "CENTRED_COLUMNS",
    "LEGACY_COORDINATE_COLUMNS",
    "ORIGIN_COLUMNS",
    "ANGLE_COLUMNS",
    "SUBTOMO_ANGLE_COLUMNS",
]

CENTRED_COLUMNS = ("rlnCenteredCoordinateXAngst", "rlnCenteredCoordinateYAngst", "rlnCenteredCoordinateZAngst")
LEGACY_COORDINATE_COLUMNS = ("rlnCoordinateX", "rlnCoordinateY", "rlnCoordinateZ")
ORIGIN_COLUMNS = ("rlnOriginXAngst", "rlnOriginYAngst", "rlnOriginZAngst")
ANGLE_COLUMNS = ("rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi")
SUBTOMO_ANGLE_COLUMNS = ("rlnTomoSubtomogramRot", "rlnTomoSubtomogramTilt", "rlnTomoSubtomogramPsi")
OPTICS_TOLERANCE = 1e-3  # Tomogram::validateParticleOptics


def _angles_to_matrices(rows: pd.DataFrame, columns) -> np.ndarray:
    n = len(rows)
    if not all(c in rows.columns for c in columns):
        return np.broadcast_to(np.eye(3), (n, 3, 3)).copy()
    a = rows[list(columns)].to_numpy(float)
    return euler_zyz_to_matrix(a[:, 0], a[:, 1], a[:, 2]).reshape(n, 3, 3)


@dataclass
class ParticleSet:
    """A RELION 5 particle set.

    Attributes
    ----------
    general
        ``data_general`` as a dict (may be empty).
    optics
        ``data_optics``, one row per optics group.
    particles
        ``data_particles``, all columns, file order; ``rlnTomoParticleName`` present.
    path
        The file it came from (None if built in memory).
    """

    general: dict
    optics: pd.DataFrame
    particles: pd.DataFrame
    path: Path | None = None
    optics_generated: bool = field(default=False, repr=False)

    # ------------------------------------------------------------------ selection
    def tomo_names(self) -> list[str]:
        """Tomogram names in order of first appearance."""
        return [str(v) for v in pd.unique(self.particles["rlnTomoName"].astype(str))]

    def for_tomogram(self, name) -> pd.DataFrame:
        """The rows of one tomogram (original index kept, file order)."""
        return self.particles.loc[self.particles["rlnTomoName"].astype(str) == str(name)]

    def _rows(self, rows) -> pd.DataFrame:
        if rows is None:
            return self.particles
        if isinstance(rows, pd.DataFrame):
            return rows
        return self.particles.loc[rows]

    # ------------------------------------------------------------------ optics
    def optics_row(self, optics_group) -> pd.Series:
        """The ``data_optics`` row with ``rlnOpticsGroup == optics_group``."""
        if "rlnOpticsGroup" not in self.optics.columns:
            if len(self.optics) == 1:
                return self.optics.iloc[0]
            raise InputError("data_optics has no rlnOpticsGroup column", path=self.path,
                             field="data_optics/rlnOpticsGroup", fix="number the optics groups from 1")
        match = self.optics.loc[self.optics["rlnOpticsGroup"].astype(int) == int(optics_group)]
        if len(match) == 0:
            raise InputError(
                f"optics group {optics_group} is not in data_optics",
                path=self.path,
                field="data_optics/rlnOpticsGroup",
                fix="every rlnOpticsGroup in data_particles needs a row in data_optics",
            )
        return match.iloc[0]

    def pixel_size_angst(self, optics_group=1) -> float:
        """``rlnTomoTiltSeriesPixelSize`` of one optics group (Å)."""
        row = self.optics_row(optics_group)
        if "rlnTomoTiltSeriesPixelSize" not in row.index or pd.isna(row["rlnTomoTiltSeriesPixelSize"]):
            raise InputError(
                "rlnTomoTiltSeriesPixelSize is missing from data_optics",
                path=self.path,
                field="data_optics/rlnTomoTiltSeriesPixelSize",
                fix="add the tilt-series pixel size (Å) to every optics group",
            )
        return float(row["rlnTomoTiltSeriesPixelSize"])

    def zernike(self, optics_group=1) -> tuple[np.ndarray, np.ndarray]:
        """``(even, odd)`` aberration coefficients of one optics group (``rlnEvenZernike``/``rlnOddZernike``),
        float64, length 0 when absent."""
        row = self.optics_row(optics_group)
        out = []
        for label in ("rlnEvenZernike", "rlnOddZernike"):
            out.append(parse_vector(row[label]) if label in row.index else np.zeros(0))
        return out[0], out[1]

    def optics_groups(self, rows=None) -> np.ndarray:
        """``rlnOpticsGroup`` of the rows, int ``(n,)`` (1 when the column is absent)."""
        rows = self._rows(rows)
        if "rlnOpticsGroup" not in rows.columns:
            return np.ones(len(rows), dtype=np.int64)
        return rows["rlnOpticsGroup"].to_numpy(np.int64)

    # ------------------------------------------------------------------ geometry
    def centred_angst(self, rows, tomo_size_px, pixel_size_angst) -> np.ndarray:
        """Centred positions (Å), float64 ``(n, 3)`` (x, y, z).

        From ``rlnCenteredCoordinate*Angst``, or from the legacy decentred pixel
        ``rlnCoordinate*`` as ``(p − size/2)·pix``.
        """
        rows = self._rows(rows)
        if all(c in rows.columns for c in CENTRED_COLUMNS):
            return rows[list(CENTRED_COLUMNS)].to_numpy(np.float64)
        if all(c in rows.columns for c in LEGACY_COORDINATE_COLUMNS):
            px = rows[list(LEGACY_COORDINATE_COLUMNS)].to_numpy(np.float64)
            return (px - tomogram_centre_px(tomo_size_px)) * float(pixel_size_angst)
        raise InputError(
            "particle positions are missing: need rlnCenteredCoordinate{X,Y,Z}Angst or rlnCoordinate{X,Y,Z}",
            path=self.path,
            field="data_particles/rlnCenteredCoordinateXAngst",
            fix="add the centred coordinates in Å",
        )

    def origins_angst(self, rows=None) -> np.ndarray:
        """``rlnOrigin{X,Y,Z}Angst``, float64 ``(n, 3)``; zeros when absent."""
        rows = self._rows(rows)
        if all(c in rows.columns for c in ORIGIN_COLUMNS):
            return rows[list(ORIGIN_COLUMNS)].to_numpy(np.float64)
        out = np.zeros((len(rows), 3))
        for i, c in enumerate(ORIGIN_COLUMNS):
            if c in rows.columns:
                out[:, i] = rows[c].to_numpy(np.float64)
        return out

    def subtomo_matrices(self, rows=None) -> np.ndarray:
        """``A_sub`` from ``rlnTomoSubtomogram{Rot,Tilt,Psi}``, float64 ``(n, 3, 3)``; identity when absent."""
        return _angles_to_matrices(self._rows(rows), SUBTOMO_ANGLE_COLUMNS)

    def particle_matrices(self, rows=None) -> np.ndarray:
        """``A_sub @ A_part`` (``rlnAngle{Rot,Tilt,Psi}``), float64 ``(n, 3, 3)``."""
        rows = self._rows(rows)
        return self.subtomo_matrices(rows) @ _angles_to_matrices(rows, ANGLE_COLUMNS)

    def particle_names(self, rows=None) -> list[str]:
        return [str(v) for v in self._rows(rows)["rlnTomoParticleName"]]

    def with_particles(self, particles: pd.DataFrame) -> "ParticleSet":
        """A copy with another particles table (same general/optics)."""
        return replace(self, particles=particles, optics=self.optics.copy(), general=dict(self.general))


def _generate_names(particles: pd.DataFrame) -> pd.Series:
    counts: dict = {}
    names = []
    for tomo in particles["rlnTomoName"].astype(str):
        counts[tomo] = counts.get(tomo, 0) + 1
        names.append(f"{tomo}/{counts[tomo]}")
    return pd.Series(names, index=particles.index, dtype=str)


def read_particle_set(path) -> ParticleSet:
    """Read a RELION 5 (or RELION 4) particle set.

    Raises
    ------
    InputError
        Missing file, missing ``data_particles``, missing ``rlnTomoName`` or positions, duplicate
        ``rlnTomoParticleName``.
    """
    path = Path(path)
    blocks = read_star(path)
    particles = require_table(blocks, "particles", path)
    require_columns(particles, ("rlnTomoName",), path, "particles")
    if not (all(c in particles.columns for c in CENTRED_COLUMNS)
            or all(c in particles.columns for c in LEGACY_COORDINATE_COLUMNS)):
        raise InputError(
            "particle positions are missing: need rlnCenteredCoordinate{X,Y,Z}Angst or rlnCoordinate{X,Y,Z}",
            path=path,
            field="data_particles/rlnCenteredCoordinateXAngst",
            fix="add the centred coordinates in Å",
        )
    particles = particles.copy()
    if "rlnTomoParticleName" not in particles.columns:
        particles.insert(list(particles.columns).index("rlnTomoName") + 1, "rlnTomoParticleName",
                         _generate_names(particles))
    names = particles["rlnTomoParticleName"].astype(str)
    if names.duplicated().any():
        dup = names[names.duplicated()].iloc[0]
        raise InputError(f"duplicate particle name {dup!r}", path=path, field="data_particles/rlnTomoParticleName",
                         fix="every rlnTomoParticleName must be unique")
    general = blocks.get("general", {})
    if isinstance(general, pd.DataFrame):
        general = general.iloc[0].to_dict() if len(general) else {}
    optics_generated = False
    if "optics" in blocks:
        optics = require_table(blocks, "optics", path)
    else:
        # Straight from picking: RELION builds one group per tomogram from the tomogram set.
        tomos = [str(v) for v in pd.unique(particles["rlnTomoName"].astype(str))]
        warnings.warn(
            f"{path}: no data_optics table; making one optics group per tomogram ({len(tomos)}). "
            "Their voltage, Cs, amplitude contrast and pixel size come from the tomogram set "
            "(fill_optics_from_tomograms).",
            stacklevel=2,
        )
        optics = pd.DataFrame({"rlnOpticsGroup": np.arange(1, len(tomos) + 1, dtype=np.int64),
                               "rlnOpticsGroupName": pd.Series(tomos, dtype=str)})
        group_of = {t: i + 1 for i, t in enumerate(tomos)}
        particles["rlnOpticsGroup"] = particles["rlnTomoName"].astype(str).map(group_of).astype(np.int64)
        optics_generated = True
    return ParticleSet(general=dict(general), optics=optics, particles=particles, path=path,
                       optics_generated=optics_generated)


def write_particle_set(pset: ParticleSet, path) -> None:
    """Write ``data_general`` (when not empty), ``data_optics`` and ``data_particles`` atomically."""
    blocks = {}
    if pset.general:
        blocks["general"] = dict(pset.general)
    blocks["optics"] = pset.optics
    blocks["particles"] = pset.particles
    write_star(blocks, path)


def check_particles_against_tomograms(pset: ParticleSet, tset) -> None:
    """Raise an :class:`InputError` if a particle's ``rlnTomoName`` is not in the tomogram set."""
    known = set(tset.names())
    missing = [n for n in pset.tomo_names() if n not in known]
    if missing:
        counts = pset.particles["rlnTomoName"].astype(str).isin(missing).sum()
        raise InputError(
            f"{counts} particle(s) refer to tomogram(s) not in the tomogram set {tset.path}: {', '.join(missing)}",
            path=pset.path,
            field="data_particles/rlnTomoName",
            fix="use the tomograms.star the particles were picked on, or remove those particles",
        )


def fill_optics_from_tomograms(pset: ParticleSet, tset) -> ParticleSet:
    """Fill a generated optics table (one group per tomogram) from the tomogram set's global table."""
    optics = pset.optics.copy()
    mapping = {
        "rlnVoltage": "rlnVoltage",
        "rlnSphericalAberration": "rlnSphericalAberration",
        "rlnAmplitudeContrast": "rlnAmplitudeContrast",
        "rlnTomoTiltSeriesPixelSize": "rlnTomoTiltSeriesPixelSize",
    }
    check_particles_against_tomograms(pset, tset)
    for label in mapping:
        if label in optics.columns:
            continue
        values = []
        for _, orow in optics.iterrows():
            group = int(orow["rlnOpticsGroup"])
            tomos = pset.particles.loc[pset.optics_groups() == group, "rlnTomoName"].astype(str)
            if len(tomos) == 0:
                values.append(np.nan)
                continue
            values.append(float(tset.row(tomos.iloc[0])[label]) if label in tset.global_table.columns else np.nan)
        optics[label] = np.asarray(values, dtype=np.float64)
    return replace(pset, optics=optics)


def check_optics_match(pset: ParticleSet, tset, tolerance: float = OPTICS_TOLERANCE) -> None:
    """Check voltage, Cs, amplitude contrast and pixel size of each particle's optics group against its tomogram.

    Mirrors RELION's ``Tomogram::validateParticleOptics`` (absolute tolerance 1e-3).
    """
    labels = ("rlnTomoTiltSeriesPixelSize", "rlnVoltage", "rlnSphericalAberration", "rlnAmplitudeContrast")
    check_particles_against_tomograms(pset, tset)
    pairs = pd.DataFrame({"tomo": pset.particles["rlnTomoName"].astype(str).to_numpy(),
                          "group": pset.optics_groups()}).drop_duplicates()
    for tomo, group in zip(pairs["tomo"], pairs["group"]):
        orow = pset.optics_row(group)
        trow = tset.row(tomo)
        for label in labels:
            if label not in orow.index or label not in trow.index:
                if label == "rlnTomoTiltSeriesPixelSize" and label not in orow.index:
                    pset.pixel_size_angst(group)  # raises the missing-column error
                continue
            a, b = float(orow[label]), float(trow[label])
            if abs(a - b) > tolerance:
                raise InputError(
                    f"{label} of optics group {int(group)} is {a:g} but tomogram {tomo} has {b:g} "
                    f"(tolerance {tolerance:g})",
                    path=pset.path,
                    field=f"data_optics/{label}",
                    fix=f"make data_optics agree with {tset.path}",
                )
