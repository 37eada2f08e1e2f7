"""MRC volumes and image stacks through :mod:`mrcfile`.

Arrays are numpy order: a volume is ``(z, y, x)``, a stack ``(n, y, x)``. Output is mode 2 (float32)
or mode 12 (float16), written atomically with the voxel size in the header.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import mrcfile
import numpy as np

from ..errors import InputError
from .atomic import atomic_path

__all__ = [
    "read_mrc",
    "write_mrc",
    "read_mrc_header_shape",
    "read_mrc_voxel_size",
    "read_mrc_slices",
    "MrcSectionRows",
]


def _check_exists(path: Path) -> None:
    if not path.is_file():
        raise InputError("MRC file not found", path=path, fix="check the path (relative to the directory you run from)")


def _open(path: Path, header_only: bool = False):
    _check_exists(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return mrcfile.open(path, mode="r", permissive=True, header_only=header_only)
    except Exception as exc:
        raise InputError(f"cannot read MRC file: {exc}", path=path, fix="check that it is a complete MRC file") from exc


def read_mrc(path) -> tuple[np.ndarray, float]:
    """Read an MRC file.

    Returns
    -------
    data
        The array as stored (dtype of the file's mode), ``(z, y, x)`` for a volume or stack,
        ``(y, x)`` for a single image.
    voxel_size_angst
        ``voxel_size.x`` from the header (Å).

    Raises
    ------
    InputError
        Missing, truncated or non-MRC file.
    """
    path = Path(path)
    mrc = _open(path)
    try:
        if mrc.data is None:
            raise InputError("MRC file has no readable data (truncated or not an MRC file)", path=path,
                             fix="re-create the file")
        data = np.array(mrc.data)
        voxel = float(mrc.voxel_size.x)
    finally:
        mrc.close()
    return data, voxel


def read_mrc_slices(path, indices) -> np.ndarray:
    """Read selected 0-based sections of a stack, memory-mapped; float32 ``(len(indices), y, x)``."""
    path = Path(path)
    _check_exists(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            mrc = mrcfile.mmap(path, mode="r", permissive=True)
    except Exception as exc:
        raise InputError(f"cannot read MRC file: {exc}", path=path, fix="check that it is a complete MRC file") from exc
    try:
        if mrc.data is None:
            raise InputError("MRC file has no readable data", path=path, fix="re-create the file")
        data = mrc.data
        if data.ndim == 2:
            data = data[None]
        n = data.shape[0]
        idx = np.asarray(indices, dtype=np.int64)
        bad = idx[(idx < 0) | (idx >= n)]
        if bad.size:
            raise InputError(
                f"section {int(bad[0]) + 1} requested but the stack has {n} sections",
                path=path,
                fix="check the N@stack indices (1-based) against the stack",
            )
        if data.ndim == 3 and mrc.header.mode in (1, 2, 6, 12):
            offset = int(mrc.header.nsymbt) + 1024
            dtype = mrcfile.utils.data_dtype_from_header(mrc.header)
            shape = data.shape
        else:
            return np.ascontiguousarray(data[idx], dtype=np.float32)
    finally:
        mrc.close()
    # Section by section from the file, not through the memory map: the mapped pages count as resident, so
    # copying out of the map doubled the peak memory of a tilt-series read.
    out = np.empty((len(idx),) + shape[1:], dtype=np.float32)
    per_section = shape[1] * shape[2]
    with open(path, "rb") as fh:
        for k, i in enumerate(idx):
            fh.seek(offset + int(i) * per_section * dtype.itemsize)
            section = np.fromfile(fh, dtype=dtype, count=per_section)
            if section.size != per_section:
                raise InputError(f"MRC file is truncated in section {int(i) + 1}", path=path,
                                 fix="re-create the file")
            out[k] = section.reshape(shape[1:])
    return out


class MrcSectionRows:
    """Row bands of the sections of one MRC stack, read from the file on demand.

    For pipelines that need only windows of a large stack: a band costs its own size in memory, not the
    stack's (a memory map would not help: the pages it touches count as resident). Files of a mode
    that cannot be read by offset are loaded whole once, then sliced.

    Use as a context manager, or call :meth:`close`.
    """

    def __init__(self, path):
        self.path = Path(path)
        mrc = _open(self.path, header_only=True)
        try:
            header = mrc.header
            nx, ny, nz = int(header.nx), int(header.ny), int(header.nz)
            mode = int(header.mode)
            offset = 1024 + int(header.nsymbt)
            dtype = mrcfile.utils.data_dtype_from_header(header) if mode in (1, 2, 6, 12) else None
        finally:
            mrc.close()
        self.shape = (nz, ny, nx)
        self._offset = offset
        self._dtype = dtype
        self._whole = None
        self._fh = None
        if dtype is None:
            self._whole = read_mrc_slices(self.path, range(nz))
            return
        expected = offset + nz * ny * nx * dtype.itemsize
        if self.path.stat().st_size < expected:
            raise InputError(f"MRC file is truncated: {self.path.stat().st_size} bytes, the header needs {expected}",
                             path=self.path, fix="re-create the file")
        self._fh = open(self.path, "rb")

    def read_rows(self, section: int, y_start: int, y_stop: int, out=None) -> np.ndarray:
        """Rows ``[y_start, y_stop)`` of 0-based ``section``: float32 ``(y_stop − y_start, nx)``.

        ``out``, if given, is a float32 C-contiguous buffer with at least that many rows of ``nx``; the
        band is written into its first rows and that view is returned.
        """
        nz, ny, nx = self.shape
        if not (0 <= section < nz and 0 <= y_start <= y_stop <= ny):
            raise InputError(f"rows {y_start}:{y_stop} of section {section + 1} requested but the stack is "
                             f"{nz} x {ny} x {nx}", path=self.path, fix="check the N@stack indices against the stack")
        n_rows = y_stop - y_start
        band = np.empty((n_rows, nx), np.float32) if out is None else out[:n_rows]
        if self._whole is not None:
            band[:] = self._whole[section, y_start:y_stop]
            return band
        self._fh.seek(self._offset + (section * ny + y_start) * nx * self._dtype.itemsize)
        if self._dtype == np.dtype(np.float32):  # native float32: straight into the band, no temporary
            got = self._fh.readinto(memoryview(band).cast("B"))
            complete = got == band.nbytes
        else:
            raw = np.fromfile(self._fh, dtype=self._dtype, count=n_rows * nx)
            complete = raw.size == n_rows * nx
            if complete:
                band[:] = raw.reshape(n_rows, nx)
        if not complete:
            raise InputError(f"MRC file is truncated in section {section + 1}", path=self.path, fix="re-create the file")
        return band

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        self._whole = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def read_mrc_header_shape(path) -> tuple[int, int, int]:
    """``(nx, ny, nz)`` from the header, without reading the data."""
    path = Path(path)
    mrc = _open(path, header_only=True)
    try:
        h = mrc.header
        return int(h.nx), int(h.ny), int(h.nz)
    finally:
        mrc.close()


def read_mrc_voxel_size(path) -> float:
    """Voxel size (Å) from the header, without reading the data."""
    path = Path(path)
    mrc = _open(path, header_only=True)
    try:
        return float(mrc.voxel_size.x)
    finally:
        mrc.close()


def write_mrc(path, data, voxel_size_angst: float, float16: bool = False) -> None:
    """Write an array atomically as mode 2 (float32) or, with ``float16``, mode 12.

    Parameters
    ----------
    data
        ``(z, y, x)`` volume/stack or ``(y, x)`` image; converted to float32/float16.
    voxel_size_angst
        Written to the header (all three axes).
    """
    arr = np.ascontiguousarray(data, dtype=np.float16 if float16 else np.float32)
    with atomic_path(path) as tmp:
        with mrcfile.new(tmp, overwrite=True) as mrc:
            mrc.set_data(arr)
            mrc.voxel_size = float(voxel_size_angst)
            if arr.ndim == 3:
                # Stacks of 2D images (.mrcs) are image stacks; everything else a volume, as RELION writes them.
                if str(path).endswith(".mrcs"):
                    mrc.set_image_stack()
                else:
                    mrc.set_volume()
            mrc.update_header_stats()
            # mrcfile stamps the creation time into label 0; a fixed label keeps outputs byte-identical
            # for identical inputs (runs must be deterministic).
            mrc.header.label[0] = b"Created by tomo-refine".ljust(80)
            mrc.header.nlabl = 1
