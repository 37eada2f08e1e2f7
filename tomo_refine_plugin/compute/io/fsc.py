"""FSC STAR files (``data_fsc``) as RELION's postprocess writes them."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .star import read_star, require_columns, require_table, write_star

__all__ = ["read_fsc", "write_fsc"]


def read_fsc(path) -> pd.DataFrame:
    """Read ``data_fsc``; requires ``rlnSpectralIndex`` and ``rlnFourierShellCorrelationCorrected``.

    Raises InputError naming file and column when either is missing.
    """
    path = Path(path)
    blocks = read_star(path)
    table = require_table(blocks, "fsc", path)
    require_columns(table, ("rlnSpectralIndex", "rlnFourierShellCorrelationCorrected"), path, "fsc")
    return table


def write_fsc(path, spectral_index, resolution_inv_angst, fsc, extra_columns: dict | None = None) -> None:
    """Write ``data_fsc`` with ``rlnSpectralIndex``, ``rlnResolution`` (1/Å), ``rlnAngstromResolution``
    (Å; 999 at index 0, as RELION) and ``rlnFourierShellCorrelationCorrected``, plus ``extra_columns``.

    All arrays are ``(n_shells,)``.
    """
    idx = np.asarray(spectral_index, dtype=np.int64)
    res = np.asarray(resolution_inv_angst, dtype=np.float64)
    with np.errstate(divide="ignore"):
        angst = np.where(res > 0, 1.0 / np.where(res > 0, res, 1.0), 999.0)
    table = pd.DataFrame({
        "rlnSpectralIndex": idx,
        "rlnResolution": res,
        "rlnAngstromResolution": angst,
        "rlnFourierShellCorrelationCorrected": np.asarray(fsc, dtype=np.float64),
    })
    for k, v in (extra_columns or {}).items():
        table[k] = np.asarray(v)
    write_star({"fsc": table}, path)
