"""RELION tomogram sets: ``tomograms.star`` (``data_global``) and the per-tilt-series STAR files.

Two layouts are read:

* RELION 5 (two-level): ``data_global`` has ``rlnTomoTiltSeriesStarFile``; each names a STAR file whose
  table ``data_<rlnTomoName>`` has one row per tilt image, in frame order.
* RELION 4 (all-in-one): no ``rlnTomoTiltSeriesStarFile``; the per-tilt tables ``data_<rlnTomoName>``
  follow ``data_global`` in the same file, the geometry is given as the rows of each tilt's 4×4
  projection matrix (``rlnTomoProjX/Y/Z/W``, ``[a,b,c,d]``) and the images are the sections of the
  stack ``rlnTomoTiltSeriesName``.

Paths in the files are relative to the directory RELION ran in. They are resolved against the
current working directory first and, failing that, against the directory of the STAR file that
holds them, so a dataset can be read from anywhere.

Tables are kept whole (every column, row order, exact values); the geometry and optics dataclasses
are views computed on demand.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..conventions import projection_to_relion_angles
from ..errors import InputError
from ..geometry import TiltSeriesGeometry, TiltSeriesOptics
from .mrc import MrcSectionRows, read_mrc_header_shape, read_mrc_slices
from .star import format_vector, parse_vector, read_star, require_columns, require_table, write_star

__all__ = [
    "TomogramSet",
    "read_tomogram_set",
    "write_tomogram_set",
    "load_tilt_series",
    "TiltSeriesRows",
    "split_image_name",
    "resolve_path",
    "search_dirs",
    "GEOMETRY_COLUMNS",
    "PROJECTION_COLUMNS",
]

GEOMETRY_COLUMNS = ("rlnTomoXTilt", "rlnTomoYTilt", "rlnTomoZRot", "rlnTomoXShiftAngst", "rlnTomoYShiftAngst")
PROJECTION_COLUMNS = ("rlnTomoProjX", "rlnTomoProjY", "rlnTomoProjZ", "rlnTomoProjW")
_GLOBAL_REQUIRED = ("rlnTomoName",)
_OPTICS_GLOBAL_REQUIRED = ("rlnVoltage", "rlnSphericalAberration", "rlnAmplitudeContrast")
_OPTICS_TILT_REQUIRED = ("rlnDefocusU", "rlnDefocusV", "rlnDefocusAngle", "rlnMicrographPreExposure")


def resolve_path(name, bases=()) -> Path | None:
    """Find a file named in a STAR file: as given (absolute, or relative to the cwd), else under each of ``bases``.

    Returns the first existing path, or None.
    """
    p = Path(str(name))
    if p.is_absolute():
        return p if p.exists() else None
    if p.exists():
        return p
    for base in bases:
        q = Path(base) / p
        if q.exists():
            return q
    return None


def search_dirs(star_path, levels: int = 4) -> tuple:
    """Folders to resolve a STAR file's relative paths against, after the cwd: its own folder, then up to
    ``levels`` of its ancestors (RELION writes paths relative to the project folder, which holds the job
    folder the STAR file is in)."""
    d = Path(star_path).absolute().parent
    return (d,) + tuple(d.parents)[:levels]


def split_image_name(name: str) -> tuple[int | None, str]:
    """``'3@stack.mrcs'`` → ``(2, 'stack.mrcs')`` (0-based section); ``'img.mrc'`` → ``(None, 'img.mrc')``."""
    s = str(name).strip()
    if "@" in s:
        head, tail = s.split("@", 1)
        try:
            k = int(head)
        except ValueError as exc:
            raise InputError(f"image name {s!r} has a non-integer section number", field="rlnMicrographName",
                             fix="use N@stack.mrcs with N counted from 1") from exc
        if k < 1:
            raise InputError(f"image name {s!r}: section numbers start at 1", field="rlnMicrographName",
                             fix="use N@stack.mrcs with N counted from 1")
        return k - 1, tail
    return None, s


def _strip_stack_suffix(name: str) -> str:
    # RELION 4 import writes stacks as 'TS_01.mrc:mrc'.
    s = str(name)
    for suffix in (":mrcs", ":mrc"):
        if s.endswith(suffix):
            return s[: -len(suffix)]
    return s


@dataclass
class TomogramSet:
    """A RELION tomogram set.

    Attributes
    ----------
    global_table
        ``data_global``, one row per tomogram, all columns and row order kept.
    tilt_tables
        ``rlnTomoName`` → per-tilt table (file order = frame index), all columns kept.
    path
        The ``tomograms.star`` it came from (None if built in memory).
    source_dirs
        ``rlnTomoName`` → directories (besides the cwd) against which its image paths resolve:
        the per-tilt STAR's folder and the ``tomograms.star`` folder.
    tilt_star_paths
        ``rlnTomoName`` → the per-tilt STAR file read (for error messages).
    """

    global_table: pd.DataFrame
    tilt_tables: dict
    path: Path | None = None
    source_dirs: dict = field(default_factory=dict, repr=False)
    tilt_star_paths: dict = field(default_factory=dict, repr=False)
    _image_size_cache: dict = field(default_factory=dict, repr=False, compare=False)
    _warned: set = field(default_factory=set, repr=False, compare=False)

    # ------------------------------------------------------------------ lookup
    def names(self) -> list[str]:
        """``rlnTomoName`` of every tomogram, in table order."""
        return [str(v) for v in self.global_table["rlnTomoName"]]

    def _index(self, name) -> int:
        names = self.names()
        try:
            return names.index(str(name))
        except ValueError:
            raise InputError(
                f"tomogram {name!r} is not in the tomogram set (it has: {', '.join(names)})",
                path=self.path,
                field="rlnTomoName",
                fix="use a tomogram set that contains every tomogram the particles refer to",
            ) from None

    def row(self, name) -> pd.Series:
        """The ``data_global`` row of one tomogram."""
        return self.global_table.iloc[self._index(name)]

    def tilt_table(self, name) -> pd.DataFrame:
        """The per-tilt table of one tomogram."""
        self._index(name)
        try:
            return self.tilt_tables[str(name)]
        except KeyError:
            raise InputError(f"no per-tilt table for tomogram {name!r}", path=self.path, field=f"data_{name}") from None

    def n_tilts(self, name) -> int:
        return len(self.tilt_table(name))

    def _where(self, name) -> Path | None:
        return self.tilt_star_paths.get(str(name), self.path)

    def _bases(self, name) -> tuple:
        return tuple(self.source_dirs.get(str(name), ())) + (search_dirs(self.path) if self.path is not None else ())

    def _global_value(self, name, column, default=None, required=True):
        row = self.row(name)
        if column not in row.index or pd.isna(row[column]):
            if required and default is None:
                raise InputError(
                    f"required column {column} is missing for tomogram {name}",
                    path=self.path,
                    field=f"data_global/{column}",
                    fix=f"add {column} to data_global",
                )
            return default
        return row[column]

    # ------------------------------------------------------------------ images
    def image_files(self, name) -> list[tuple[Path, int]]:
        """``(file, 0-based section)`` of every tilt image, in frame order, resolved on disk."""
        table = self.tilt_table(name)
        bases = self._bases(name)
        out = []
        if "rlnMicrographName" in table.columns:
            for value in table["rlnMicrographName"]:
                section, fname = split_image_name(value)
                resolved = resolve_path(fname, bases)
                if resolved is None:
                    raise InputError(
                        f"tilt image {value!r} not found (looked relative to the cwd and to "
                        f"{', '.join(str(b) for b in bases) or 'nothing else'})",
                        path=self._where(name),
                        field=f"data_{name}/rlnMicrographName",
                        fix="run from the RELION project directory or fix the path",
                    )
                out.append((resolved, 0 if section is None else section))
            return out
        stack = self._global_value(name, "rlnTomoTiltSeriesName", default="", required=False)
        if not stack:
            raise InputError(
                f"tomogram {name} names no images: neither rlnMicrographName in its tilt table nor "
                "rlnTomoTiltSeriesName in data_global",
                path=self._where(name),
                field=f"data_{name}/rlnMicrographName",
                fix="add rlnMicrographName (N@stack.mrcs) to the per-tilt table",
            )
        resolved = resolve_path(_strip_stack_suffix(stack), bases)
        if resolved is None:
            raise InputError(f"tilt-series stack {stack!r} not found", path=self.path,
                             field="data_global/rlnTomoTiltSeriesName", fix="fix the path")
        return [(resolved, f) for f in range(len(table))]

    def image_size_px(self, name) -> tuple[int, int]:
        """``(W, H)`` of the tilt images, from the first image's MRC header."""
        key = str(name)
        if key not in self._image_size_cache:
            fname, _ = self.image_files(name)[0]
            nx, ny, _nz = read_mrc_header_shape(fname)
            self._image_size_cache[key] = (nx, ny)
        return self._image_size_cache[key]

    def set_image_size_px(self, name, size) -> None:
        """Record ``(W, H)`` for a set whose images are not on disk yet (simulation, tests)."""
        self._image_size_cache[str(name)] = (int(size[0]), int(size[1]))

    # ------------------------------------------------------------------ geometry / optics
    def tomo_size_px(self, name) -> tuple[int, int, int]:
        """``(w0, h0, d0)`` from ``rlnTomoSizeX/Y/Z``."""
        size = []
        for axis in "XYZ":
            value = self._global_value(name, f"rlnTomoSize{axis}", default=None, required=True)
            size.append(int(round(float(value))))
        return tuple(size)

    def has_projection_matrices(self, name) -> bool:
        return all(c in self.tilt_table(name).columns for c in PROJECTION_COLUMNS)

    def projection_matrices_from_table(self, name) -> np.ndarray:
        """The legacy ``rlnTomoProjX/Y/Z/W`` rows as ``(n_tilts, 4, 4)`` float64."""
        table = self.tilt_table(name)
        require_columns(table, PROJECTION_COLUMNS, self._where(name), str(name))
        proj = np.zeros((len(table), 4, 4))
        for r, col in enumerate(PROJECTION_COLUMNS):
            for f, cell in enumerate(table[col]):
                v = parse_vector(cell)
                if v.shape != (4,):
                    raise InputError(f"row {f + 1}: {col} must have 4 entries, got {cell!r}", path=self._where(name),
                                     field=f"data_{name}/{col}", fix="write it as [a,b,c,d]")
                proj[f, r] = v
        return proj

    def geometry(self, name) -> TiltSeriesGeometry:
        """The projection geometry of one tilt series.

        When the legacy ``rlnTomoProjX/Y/Z/W`` columns are present they are used (as RELION does) and
        converted to angles and shifts, with a warning.
        """
        name = str(name)
        table = self.tilt_table(name)
        pix = float(self._global_value(name, "rlnTomoTiltSeriesPixelSize"))
        tomo_size = self.tomo_size_px(name)
        image_size = self.image_size_px(name)
        hand = float(self._global_value(name, "rlnTomoHand"))
        slope = float(self._global_value(name, "rlnTomoDefocusSlope", default=1.0, required=False))
        if self.has_projection_matrices(name):
            # RELION 5 prefers the matrices when both are present; files we write carry both, consistent.
            xt, yt, zr, sx, sy = projection_to_relion_angles(
                self.projection_matrices_from_table(name), pix, tomo_size, image_size
            )
            shift = np.stack([sx, sy], -1)
            has_angles = all(c in table.columns for c in GEOMETRY_COLUMNS[1:])
            consistent = has_angles and np.allclose(
                np.stack([table[c].to_numpy(float) if c in table.columns else np.zeros(len(table))
                          for c in GEOMETRY_COLUMNS], -1),
                np.stack([xt, yt, zr, sx, sy], -1),
                atol=1e-4,
                rtol=0,
            )
            if not consistent and ("proj", name) not in self._warned:
                self._warned.add(("proj", name))
                warnings.warn(
                    f"{self._where(name)}: tomogram {name} has legacy rlnTomoProjX/Y/Z/W projection matrices"
                    + (" that disagree with its angle columns" if has_angles else "")
                    + "; using the matrices, converted to rlnTomoXTilt/YTilt/ZRot/XShiftAngst/YShiftAngst",
                    stacklevel=2,
                )
        else:
            require_columns(table, GEOMETRY_COLUMNS[1:], self._where(name), name)
            n = len(table)
            xt = table["rlnTomoXTilt"].to_numpy(float) if "rlnTomoXTilt" in table.columns else np.zeros(n)
            yt = table["rlnTomoYTilt"].to_numpy(float)
            zr = table["rlnTomoZRot"].to_numpy(float)
            shift = table[["rlnTomoXShiftAngst", "rlnTomoYShiftAngst"]].to_numpy(float)
        return TiltSeriesGeometry(
            name=name,
            tomo_size_px=tomo_size,
            image_size_px=image_size,
            pixel_size_angst=pix,
            x_tilt_deg=xt,
            y_tilt_deg=yt,
            z_rot_deg=zr,
            shift_angst=shift,
            hand=hand,
            defocus_slope=slope,
        )

    def optics(self, name) -> TiltSeriesOptics:
        """Per-tilt CTF and dose parameters; optional columns take RELION's defaults."""
        name = str(name)
        table = self.tilt_table(name)
        require_columns(self.global_table, _OPTICS_GLOBAL_REQUIRED, self.path, "global")
        require_columns(table, _OPTICS_TILT_REQUIRED, self._where(name), name)
        n = len(table)

        def col(label, default):
            return table[label].to_numpy(float) if label in table.columns else np.full(n, default)

        q0 = float(self._global_value(name, "rlnAmplitudeContrast"))
        if not 0.0 <= q0 < 1.0:
            raise InputError(f"amplitude contrast {q0} is outside [0, 1)", path=self.path,
                             field="data_global/rlnAmplitudeContrast", fix="give the fraction, e.g. 0.07")
        return TiltSeriesOptics(
            voltage_kv=float(self._global_value(name, "rlnVoltage")),
            cs_mm=float(self._global_value(name, "rlnSphericalAberration")),
            amplitude_contrast=q0,
            defocus_u_angst=table["rlnDefocusU"].to_numpy(float),
            defocus_v_angst=table["rlnDefocusV"].to_numpy(float),
            defocus_angle_deg=table["rlnDefocusAngle"].to_numpy(float),
            pre_exposure_e_per_angst2=table["rlnMicrographPreExposure"].to_numpy(float),
            ctf_scale=col("rlnCtfScalefactor", 1.0),
            ctf_bfactor_angst2=col("rlnCtfBfactor", 0.0),
            phase_shift_deg=col("rlnPhaseShift", 0.0),
            bfactor_per_dose_angst2=float(
                self._global_value(name, "rlnCtfBfactorPerElectronDose", default=0.0, required=False)
            ),
        )

    def pixel_size_angst(self, name) -> float:
        return float(self._global_value(name, "rlnTomoTiltSeriesPixelSize"))

    def fractional_dose_e_per_angst2(self, name) -> float:
        """Dose per tilt (e/Å²): ``rlnTomoImportFractionalDose``, else the pre-exposure step between the
        first two tilts in chronological order (RELION's ``fractionalDose``)."""
        value = self._global_value(name, "rlnTomoImportFractionalDose", default=None, required=False)
        if value is not None:
            return float(value)
        pre = self.optics(name).pre_exposure_e_per_angst2
        if pre.shape[0] < 2:
            return 0.0
        seq = np.argsort(pre, kind="stable")
        return float(pre[seq[1]] - pre[seq[0]])

    def deformation(self, name):
        """Existing 2D deformation of one tilt series, or None.

        Returns
        -------
        None, or dict with
            ``type``: ``'spline'``, ``'Fourier'`` or ``'linear'`` (``rlnTomoDeformationType``, default spline);
            ``grid_size``: ``(gw, gh)`` (``rlnTomoDeformationGridSizeX/Y``);
            ``coefficients``: float64 ``(n_tilts, n_coefficients)`` from ``rlnTomoDeformationCoefficients``.
        """
        table = self.tilt_table(name)
        if "rlnTomoDeformationCoefficients" not in table.columns:
            return None
        gw = self._global_value(name, "rlnTomoDeformationGridSizeX", default=None, required=False)
        gh = self._global_value(name, "rlnTomoDeformationGridSizeY", default=None, required=False)
        if gw is None or gh is None:
            raise InputError(
                f"tomogram {name} has rlnTomoDeformationCoefficients but no deformation grid size",
                path=self.path,
                field="data_global/rlnTomoDeformationGridSizeX",
                fix="add rlnTomoDeformationGridSizeX/Y (and rlnTomoDeformationType) to data_global",
            )
        kind = str(self._global_value(name, "rlnTomoDeformationType", default="spline", required=False))
        rows = [parse_vector(v) for v in table["rlnTomoDeformationCoefficients"]]
        lengths = {r.shape[0] for r in rows}
        if len(lengths) != 1:
            raise InputError(
                f"rlnTomoDeformationCoefficients of {name} have different lengths {sorted(lengths)}",
                path=self._where(name),
                field=f"data_{name}/rlnTomoDeformationCoefficients",
                fix="every tilt needs the same number of coefficients",
            )
        return {"type": kind, "grid_size": (int(gw), int(gh)), "coefficients": np.stack(rows).astype(np.float64)}

    # ------------------------------------------------------------------ derived sets
    def _copy(self, global_table, tilt_tables) -> "TomogramSet":
        keep = set(tilt_tables)
        return TomogramSet(
            global_table=global_table,
            tilt_tables=tilt_tables,
            path=self.path,
            source_dirs={k: v for k, v in self.source_dirs.items() if k in keep},
            tilt_star_paths={k: v for k, v in self.tilt_star_paths.items() if k in keep},
            _image_size_cache={k: v for k, v in self._image_size_cache.items() if k in keep},
            _warned=set(self._warned),
        )

    def with_geometry(self, geometry: TiltSeriesGeometry) -> "TomogramSet":
        """A new set in which ``geometry.name``'s five angle/shift columns hold ``geometry``'s values.

        Columns absent before are added (after the last existing one); legacy ``rlnTomoProj*`` columns,
        when present, are recomputed from the new geometry so that both agree.
        """
        name = str(geometry.name)
        table = self.tilt_table(name).copy()
        if len(table) != geometry.n_tilts:
            raise ValueError(f"{name}: geometry has {geometry.n_tilts} tilts, the table {len(table)}")
        values = {
            "rlnTomoXTilt": geometry.x_tilt_deg,
            "rlnTomoYTilt": geometry.y_tilt_deg,
            "rlnTomoZRot": geometry.z_rot_deg,
            "rlnTomoXShiftAngst": geometry.shift_angst[:, 0],
            "rlnTomoYShiftAngst": geometry.shift_angst[:, 1],
        }
        for label, v in values.items():
            table[label] = np.asarray(v, dtype=np.float64)
        if all(c in table.columns for c in PROJECTION_COLUMNS):
            _set_projection_columns(table, geometry.projection_matrices())
        tilt_tables = dict(self.tilt_tables)
        tilt_tables[name] = table
        out = self._copy(self.global_table.copy(), tilt_tables)
        out._image_size_cache.setdefault(name, tuple(geometry.image_size_px))
        return out

    def subset(self, names) -> "TomogramSet":
        """A new set with only ``names`` (in the set's own order)."""
        wanted = [str(n) for n in names]
        for n in wanted:
            self._index(n)
        mask = self.global_table["rlnTomoName"].astype(str).isin(wanted).to_numpy()
        g = self.global_table.loc[mask].reset_index(drop=True)
        return self._copy(g, {k: v for k, v in self.tilt_tables.items() if k in wanted})


def _set_projection_columns(table: pd.DataFrame, projections) -> None:
    p = np.asarray(projections, float)
    for r, col in enumerate(PROJECTION_COLUMNS):
        table[col] = pd.Series([format_vector(p[f, r]) for f in range(p.shape[0])], index=table.index, dtype=str)


# ---------------------------------------------------------------------- read
def read_tomogram_set(path) -> TomogramSet:
    """Read a RELION 5 two-level or RELION 4 all-in-one tomogram set.

    Raises
    ------
    InputError
        Missing file, missing ``data_global``, missing ``rlnTomoName``, a per-tilt STAR file or
        table that cannot be found.
    """
    path = Path(path)
    blocks = read_star(path)
    global_table = require_table(blocks, "global", path)
    require_columns(global_table, _GLOBAL_REQUIRED, path, "global")
    names = [str(v) for v in global_table["rlnTomoName"]]
    if len(set(names)) != len(names):
        raise InputError("duplicate rlnTomoName in data_global", path=path, field="data_global/rlnTomoName",
                         fix="give every tomogram a unique name")
    tilt_tables, source_dirs, star_paths = {}, {}, {}
    two_level = "rlnTomoTiltSeriesStarFile" in global_table.columns
    if not two_level:
        warnings.warn(
            f"{path}: no rlnTomoTiltSeriesStarFile column; reading it as a RELION 4 all-in-one tomogram set",
            stacklevel=2,
        )
    for i, name in enumerate(names):
        if two_level:
            rel = str(global_table["rlnTomoTiltSeriesStarFile"].iloc[i])
            tilt_path = resolve_path(rel, search_dirs(path))
            if tilt_path is None:
                raise InputError(
                    f"per-tilt STAR file {rel!r} of tomogram {name} not found (looked relative to the cwd "
                    f"{Path.cwd()}, to {path.parent} and its parents)",
                    path=path,
                    field="data_global/rlnTomoTiltSeriesStarFile",
                    fix="run from the RELION project directory or fix the path",
                )
            tblocks = read_star(tilt_path)
            table = require_table(tblocks, name, tilt_path)
            star_paths[name] = tilt_path
            source_dirs[name] = search_dirs(tilt_path) + search_dirs(path)
        else:
            table = require_table(blocks, name, path)
            star_paths[name] = path
            source_dirs[name] = search_dirs(path)
        if len(table) == 0:
            raise InputError(f"tomogram {name} has no tilt images", path=star_paths[name], field=f"data_{name}",
                             fix="the per-tilt table needs one row per tilt image")
        tilt_tables[name] = table
    return TomogramSet(global_table=global_table, tilt_tables=tilt_tables, path=path, source_dirs=source_dirs,
                       tilt_star_paths=star_paths)


# ---------------------------------------------------------------------- write
def _relative_to(p: Path, root: Path | None) -> str:
    """How RELION would name ``p`` from ``root`` (default the cwd): relative when under it, else absolute."""
    p = Path(p)
    if root is None:
        if not p.is_absolute():
            return str(p)
        root = Path.cwd()
    try:
        return str(p.absolute().relative_to(Path(root).absolute()))
    except ValueError:
        return str(p.absolute())


def _rebased_image_name(value: str, bases, root: Path | None) -> str:
    """Rewrite an image path that does not resolve from ``root`` (default cwd) but does against ``bases``."""
    section, fname = split_image_name(value)
    here = Path.cwd() if root is None else Path(root)
    if Path(fname).is_absolute() or (here / fname).exists():
        return value
    found = resolve_path(fname, bases)
    if found is None:
        return value
    new = _relative_to(found.resolve(), here)
    return new if section is None else f"{section + 1}@{new}"


def write_tomogram_set(
    tset: TomogramSet,
    path,
    tilt_series_dir: str = "tilt_series",
    write_projection_matrices: bool = False,
    rebase_image_paths: bool = True,
    relative_to=None,
) -> None:
    """Write ``data_global`` to ``path`` and one ``<tilt_series_dir>/<name>.star`` per tilt series beside it.

    Parameters
    ----------
    tilt_series_dir
        Folder of the per-tilt STAR files, relative to ``path``'s folder.
    write_projection_matrices
        Also write the legacy ``rlnTomoProjX/Y/Z/W`` rows (computed from :meth:`TomogramSet.geometry`).
        Without it they are removed, as RELION 5 does, after their geometry has been carried into the
        five angle/shift columns (which are left exactly as they are when they already agree).
    rebase_image_paths
        An ``rlnMicrographName`` (or legacy ``rlnTomoTiltSeriesName``) that does not resolve from the
        cwd but did resolve from the set's source folders is rewritten so that it does; every other
        value is written unchanged.
    relative_to
        The folder the written paths are relative to (RELION: the project folder it runs in). Default:
        the cwd. Paths outside it are written absolute.

    ``rlnTomoTiltSeriesStarFile`` is rewritten to the new per-tilt files. Each file is written
    atomically, the global table last, so a reader never sees a global table without its tilt files.
    """
    path = Path(path)
    root = None if relative_to is None else Path(relative_to)
    out_dir = path.parent
    global_table = tset.global_table.copy()
    star_values = []
    tables = {}
    for name in tset.names():
        table = tset.tilt_table(name).copy()
        bases = tset._bases(name)
        if rebase_image_paths and "rlnMicrographName" in table.columns:
            table["rlnMicrographName"] = pd.Series(
                [_rebased_image_name(v, bases, root) for v in table["rlnMicrographName"]], index=table.index,
                dtype=str,
            )
        if rebase_image_paths and "rlnTomoTiltSeriesName" in global_table.columns:
            idx = tset._index(name)
            value = str(global_table["rlnTomoTiltSeriesName"].iloc[idx])
            stripped = _strip_stack_suffix(value)
            new = _rebased_image_name(stripped, bases, root)
            if new != stripped:
                global_table.loc[global_table.index[idx], "rlnTomoTiltSeriesName"] = new + value[len(stripped):]
        if tset.has_projection_matrices(name) or write_projection_matrices:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                geometry = tset.geometry(name)
            if tset.has_projection_matrices(name):
                present = all(c in table.columns for c in GEOMETRY_COLUMNS[1:])
                current = np.stack([table[c].to_numpy(float) if c in table.columns else np.zeros(len(table))
                                    for c in GEOMETRY_COLUMNS], -1) if present else None
                wanted = np.stack([geometry.x_tilt_deg, geometry.y_tilt_deg, geometry.z_rot_deg,
                                   geometry.shift_angst[:, 0], geometry.shift_angst[:, 1]], -1)
                if current is None or not np.allclose(current, wanted, atol=1e-9, rtol=0):
                    for k, label in enumerate(GEOMETRY_COLUMNS):
                        table[label] = wanted[:, k]
            if write_projection_matrices:
                _set_projection_columns(table, geometry.projection_matrices())
            else:
                table = table.drop(columns=[c for c in PROJECTION_COLUMNS if c in table.columns])
        tilt_path = out_dir / tilt_series_dir / f"{name}.star"
        tables[name] = (tilt_path, table)
        star_values.append(_relative_to(tilt_path, root))
    global_table["rlnTomoTiltSeriesStarFile"] = pd.Series(star_values, index=global_table.index, dtype=str)
    for name, (tilt_path, table) in tables.items():
        write_star({name: table}, tilt_path)
    write_star({"global": global_table}, path)


# ---------------------------------------------------------------------- images
def load_tilt_series(tset: TomogramSet, name) -> np.ndarray:
    """Read the tilt images of one tomogram.

    Returns
    -------
    stack
        float32 ``(n_tilts, H, W)``, tilt-table (frame) order.
    """
    files = tset.image_files(name)
    groups: dict = {}
    for f, (fname, section) in enumerate(files):
        groups.setdefault(fname, []).append((f, section))
    if len(groups) == 1:
        # One stack (the usual N@stack.mrcs): its sections come back in frame order already, so skip the
        # np.stack copy (it doubled the peak memory of subtomo for a large tilt series).
        (fname, entries), = groups.items()
        stack = read_mrc_slices(fname, [s for _, s in entries])
        tset._image_size_cache.setdefault(str(name), (stack.shape[2], stack.shape[1]))
        return stack
    images = [None] * len(files)
    for fname, entries in groups.items():
        sections = read_mrc_slices(fname, [s for _, s in entries])
        for (f, _), img in zip(entries, sections):
            images[f] = img
    shapes = {img.shape for img in images}
    if len(shapes) != 1:
        raise InputError(f"tilt images of {name} differ in size: {sorted(shapes)}", path=tset._where(name),
                         field=f"data_{name}/rlnMicrographName", fix="all tilt images must have the same size")
    stack = np.stack(images).astype(np.float32, copy=False)
    tset._image_size_cache.setdefault(str(name), (stack.shape[2], stack.shape[1]))
    return stack


class TiltSeriesRows:
    """Streaming access to the tilt images of one tomogram: row bands, or whole frames, one at a time.

    The memory-bounded alternative to :func:`load_tilt_series` for callers that need only windows (subtomo)
    or one frame at a time (align): the whole series is never held in memory. Frames are in tilt-table order.

    Attributes
    ----------
    shape
        ``(n_tilts, H, W)``.

    Use as a context manager, or call :meth:`close`.
    """

    def __init__(self, tset: TomogramSet, name):
        files = tset.image_files(name)
        self._readers = {}
        try:
            for fname, _ in files:
                if fname not in self._readers:
                    self._readers[fname] = MrcSectionRows(fname)
            self._frames = []
            for f, (fname, section) in enumerate(files):
                reader = self._readers[fname]
                if not 0 <= section < reader.shape[0]:
                    raise InputError(f"section {section + 1} requested but the stack has {reader.shape[0]} sections",
                                     path=fname, fix="check the N@stack indices (1-based) against the stack")
                self._frames.append((reader, section))
            sizes = {r.shape[1:] for r, _ in self._frames}
            if len(sizes) != 1:
                raise InputError(f"tilt images of {name} differ in size: {sorted(sizes)}", path=tset._where(name),
                                 field=f"data_{name}/rlnMicrographName", fix="all tilt images must have the same size")
        except BaseException:
            self.close()
            raise
        (h, w), = sizes
        self.shape = (len(files), h, w)
        tset._image_size_cache.setdefault(str(name), (w, h))

    def read_rows(self, frame: int, y_start: int, y_stop: int, out=None) -> np.ndarray:
        """Rows ``[y_start, y_stop)`` of tilt image ``frame``: float32 ``(y_stop − y_start, W)`` (see
        :meth:`MrcSectionRows.read_rows` for ``out``)."""
        reader, section = self._frames[frame]
        return reader.read_rows(section, y_start, y_stop, out=out)

    def read_frame(self, frame: int, out=None) -> np.ndarray:
        """Tilt image ``frame`` whole: float32 ``(H, W)``, into ``out`` when given (a frame source, as in
        :mod:`..frames`)."""
        return self.read_rows(frame, 0, self.shape[1], out=out)

    def close(self) -> None:
        for reader in self._readers.values():
            reader.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
