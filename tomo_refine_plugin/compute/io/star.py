"""STAR files through :mod:`starfile`, with RELION's layout and clear errors.

Reading keeps every table and column, row order and the column order. Names (``rlnTomoName``,
``rlnMicrographName``...) are always ``str`` even when they look like numbers. RELION vector
columns such as ``rlnTomoVisibleFrames`` (``[1,0,1]``) stay strings; :func:`parse_vector` and
:func:`format_vector` convert them.

Writing uses :mod:`starfile`'s block writers with full float precision (shortest repr that reads
back to the same float64), so a write followed by a read gives back identical DataFrames, and it
puts ``# version 50001`` before each table as RELION does.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import starfile
from starfile.writer import loop_block, simple_block

from ..errors import InputError
from .atomic import atomic_write_text

__all__ = [
    "STRING_LABELS",
    "read_star",
    "write_star",
    "star_to_text",
    "require_table",
    "require_columns",
    "parse_vector",
    "format_vector",
]

# Labels that are names or paths: never numericised (a tomogram called "1" stays the string "1").
STRING_LABELS = (
    "rlnTomoName",
    "rlnTomoParticleName",
    "rlnMicrographName",
    "rlnMicrographMovieName",
    "rlnOpticsGroupName",
    "rlnImageName",
    "rlnCtfImage",
    "rlnTomoTiltSeriesStarFile",
    "rlnTomoTiltSeriesName",
    "rlnTomoImportImodDir",
    "rlnTomoImportCtfFindFile",
    "rlnTomoReconstructedTomogram",
    "rlnTomoReconstructedTomogramHalf1",
    "rlnTomoReconstructedTomogramHalf2",
    "rlnEtomoDirectiveFile",
    "rlnTomoDeformationType",
    "rlnTomoParticlesFile",
    "rlnTomoTomogramsFile",
    "rlnTomoTrajectoriesFile",
    "rlnTomoManifoldsFile",
    "rlnTomoReferenceMap1File",
    "rlnTomoReferenceMap2File",
    "rlnTomoReferenceMaskFile",
    "rlnTomoReferenceFscFile",
    "rlnMicrographNameEven",
    "rlnMicrographNameOdd",
    "rlnCtfPowerSpectrum",
    "rlnMicrographMetadata",
)

VERSION_LINE = "# version 50001"

# RELION's integer labels: written as integers even when a float column holds them (e.g. after a
# merge that went through NaN), because RELION parses these labels as integers.
INT_LABELS = (
    "rlnOpticsGroup",
    "rlnRandomSubset",
    "rlnClassNumber",
    "rlnGroupNumber",
    "rlnTomoSizeX",
    "rlnTomoSizeY",
    "rlnTomoSizeZ",
    "rlnTomoFrameCount",
    "rlnTomoDeformationGridSizeX",
    "rlnTomoDeformationGridSizeY",
    "rlnTomoSubTomosAre2DStacks",
    "rlnImageSize",
    "rlnImageDimensionality",
    "rlnCtfDataAreCtfPremultiplied",
    "rlnSpectralIndex",
    "rlnParticleNumber",
)


def _normalise_frame(df: pd.DataFrame) -> pd.DataFrame:
    """Make name columns ``str`` and give the frame a plain RangeIndex."""
    df = df.reset_index(drop=True)  # a new frame: starfile's ``.name`` attribute is not carried over
    for col in df.columns:
        if col in STRING_LABELS and len(df) and df[col].dtype != object:
            df[col] = df[col].astype(str)
    # Empty loops come back from starfile as float zeros; name columns must still be strings.
    if len(df) == 0:
        for col in df.columns:
            if col in STRING_LABELS:
                df[col] = df[col].astype(str)
    return df


def read_star(path) -> dict:
    """Read every table of a STAR file.

    Parameters
    ----------
    path
        The STAR file.

    Returns
    -------
    blocks
        ``{table name without 'data_': DataFrame (loop) | dict (list table)}``, in file order.

    Raises
    ------
    InputError
        If the file is missing or cannot be parsed.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("STAR file not found", path=path, fix="check the path (relative paths are relative to the "
                         "directory you run from, as in RELION)")
    try:
        blocks = starfile.read(path, always_dict=True, parse_as_string=list(STRING_LABELS))
    except Exception as exc:  # starfile raises many kinds; the user needs the file name
        raise InputError(f"cannot parse STAR file: {exc}", path=path, fix="check that it is a valid STAR file") from exc
    out = {}
    for name, block in blocks.items():
        if isinstance(block, pd.DataFrame):
            out[name] = _normalise_frame(block)
        else:
            out[name] = {k: (str(v) if k in STRING_LABELS else v) for k, v in block.items()}
    return out


def _float_repr(x) -> str:
    return repr(float(x))


def _cells_for_writing(df: pd.DataFrame) -> pd.DataFrame:
    """RELION spellings: booleans as 0/1, array-valued cells as ``[a,b,c]`` vectors."""
    out = None
    for col in df.columns:
        series = df[col]
        if series.dtype == bool:
            out = df.copy() if out is None else out
            out[col] = series.astype(np.int64)
        elif (col in INT_LABELS and series.dtype.kind == "f" and len(series)
              and np.all(np.isfinite(series.to_numpy())) and np.all(series.to_numpy() == np.round(series.to_numpy()))):
            out = df.copy() if out is None else out
            out[col] = series.astype(np.int64)
        elif series.dtype == object and len(series) and any(
            isinstance(v, (list, tuple, np.ndarray)) for v in series
        ):
            out = df.copy() if out is None else out
            out[col] = pd.Series([format_vector(v) if isinstance(v, (list, tuple, np.ndarray)) else v
                                  for v in series], index=series.index, dtype=str)
    return df if out is None else out


def star_to_text(blocks: dict) -> str:
    """Text of a STAR file holding ``blocks`` (see :func:`write_star`)."""
    lines = [""]
    for name, block in blocks.items():
        lines.append(VERSION_LINE)
        lines.append("")
        if isinstance(block, pd.DataFrame):
            df = block.reset_index(drop=True)
            if df.columns.duplicated().any():
                raise ValueError(f"table data_{name} has duplicate columns")
            body = list(loop_block(name, _cells_for_writing(df), float_format=None, separator=" ", na_rep="<NA>"))
        elif isinstance(block, dict):
            items = {}
            for k, v in block.items():
                if isinstance(v, (bool, np.bool_)):
                    v = int(v)
                elif isinstance(v, (float, np.floating)):
                    v = _float_repr(v)
                elif isinstance(v, (list, tuple, np.ndarray)):
                    v = format_vector(v)
                elif isinstance(v, (np.integer,)):
                    v = int(v)
                items[k] = v
            body = list(simple_block(name, items))
        else:
            raise TypeError(f"table data_{name}: expected a DataFrame or a dict, got {type(block)}")
        lines.extend(line.replace("\t\t\t", "  ") for line in body)
    return "\n".join(lines) + "\n"


def write_star(blocks: dict, path) -> None:
    """Write tables to a STAR file atomically, RELION-style (``# version 50001`` before each table).

    Parameters
    ----------
    blocks
        ``{table name: DataFrame (loop table) | dict (list table)}``; written in dict order.
    path
        Output file. Parent folders are created.
    """
    atomic_write_text(path, star_to_text(blocks))


def require_table(blocks: dict, table: str, path, kind=pd.DataFrame):
    """Return ``blocks[table]`` or raise an :class:`InputError` naming the file and the missing table."""
    if table not in blocks:
        present = ", ".join(f"data_{k}" for k in blocks) or "none"
        raise InputError(
            f"table data_{table} is missing (tables present: {present})",
            path=path,
            field=f"data_{table}",
            fix=f"add a data_{table} table; RELION looks tables up by name",
        )
    block = blocks[table]
    if kind is pd.DataFrame and isinstance(block, dict):
        # A one-row table written as a list table is still that row.
        block = pd.DataFrame({k: [v] for k, v in block.items()})
    if kind is dict and isinstance(block, pd.DataFrame):
        if len(block) != 1:
            raise InputError(f"table data_{table} should have a single row", path=path, field=f"data_{table}")
        block = block.iloc[0].to_dict()
    return block


def require_columns(df: pd.DataFrame, columns, path, table: str) -> None:
    """Raise an :class:`InputError` naming the file, the table and the first missing column."""
    cols = set(df.columns) if isinstance(df, pd.DataFrame) else set(df)
    for column in columns:
        if column not in cols:
            raise InputError(
                f"required column {column} is missing from table data_{table}",
                path=path,
                field=f"data_{table}/{column}",
                fix=f"add {column} to data_{table}",
            )


def parse_vector(text, dtype=float) -> np.ndarray:
    """Parse a RELION vector cell ``'[a,b,c]'`` (or ``'a,b,c'``) into a 1-D array; ``'[]'`` gives length 0."""
    if isinstance(text, (list, tuple, np.ndarray)):
        return np.asarray(text, dtype=dtype)
    if text is None or (isinstance(text, float) and math.isnan(text)):
        return np.zeros(0, dtype=dtype)
    s = str(text).strip()
    if s.startswith("[") and s.endswith("]"):
        s = s[1:-1]
    s = s.strip()
    if not s:
        return np.zeros(0, dtype=dtype)
    return np.array([dtype(float(v)) if dtype is int else float(v) for v in s.split(",")], dtype=dtype)


def format_vector(values) -> str:
    """Format a 1-D sequence as a RELION vector cell ``'[a,b,c]'`` without spaces.

    Integers are written as integers; floats with the shortest repr that reads back exactly.
    """
    arr = np.asarray(values)
    if arr.dtype.kind in "biu":
        return "[" + ",".join(str(int(v)) for v in arr.ravel()) + "]"
    return "[" + ",".join(repr(float(v)) for v in arr.ravel()) + "]"
