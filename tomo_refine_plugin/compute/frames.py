"""Tilt images one frame at a time: how the engine reads a tilt series that need not sit in memory.

Anything with ``shape = (n_tilts, H, W)`` and ``read_frame(f, out=None) -> float32 (H, W)`` is a frame source:
an in-memory stack (:class:`ArrayFrames`), the tilt images on disk
(:class:`..io.tomograms.TiltSeriesRows`), or scratch frames spilled to a temporary file
(:class:`SpilledFrames`). Sources that can also be written have ``write_frame(f, image)``.

Why: a tilt series is ~100 MB at 768² × 41 and several GB for an unbinned K3 series, while one frame at a time
is all that the CC maps, the noise spectra and the neighbour subtraction need.
"""
from __future__ import annotations

import tempfile

import numpy as np

from .errors import InputError

__all__ = ["ArrayFrames", "SpilledFrames", "as_frames"]


class ArrayFrames:
    """The frames of an in-memory stack, float32 ``(n_tilts, H, W)``; writes go into that array."""

    def __init__(self, stack):
        self.stack = np.asarray(stack, dtype=np.float32)
        if self.stack.ndim != 3:
            raise ValueError(f"a tilt stack is (n_tilts, H, W), got shape {self.stack.shape}")
        self.shape = self.stack.shape

    def read_frame(self, f: int, out=None) -> np.ndarray:
        """Frame ``f``: a view of the stack, or copied into ``out`` (float32 ``(H, W)``) when given."""
        if out is None:
            return self.stack[f]
        out[...] = self.stack[f]
        return out

    def write_frame(self, f: int, image) -> None:
        self.stack[f] = image


class SpilledFrames:
    """Write-then-read scratch frames in an anonymous temporary file (``$TMPDIR``; removed when closed, or by the
    system if the process dies): one frame resident at a time instead of the whole series.

    Use as a context manager, or call :meth:`close`.
    """

    def __init__(self, shape):
        self.shape = tuple(int(n) for n in shape)
        self._frame_bytes = self.shape[1] * self.shape[2] * 4
        self._fh = tempfile.TemporaryFile(prefix="tomo_refine_frames_")
        self._fh.truncate(self.shape[0] * self._frame_bytes)

    def write_frame(self, f: int, image) -> None:
        image = np.ascontiguousarray(image, dtype=np.float32)
        if image.shape != self.shape[1:]:
            raise ValueError(f"frame of shape {image.shape}, expected {self.shape[1:]}")
        self._fh.seek(int(f) * self._frame_bytes)
        try:
            self._fh.write(memoryview(image).cast("B"))
            self._fh.flush()
        except OSError as err:  # typically a full $TMPDIR: say which folder and how much is needed
            need_gb = self.shape[0] * self._frame_bytes / 1e9
            raise InputError(f"cannot write scratch frames to the temporary folder ({err.strerror or err})",
                             path=tempfile.gettempdir(), field="TMPDIR",
                             fix=f"point TMPDIR at a folder with {need_gb:.1f} GB free") from err

    def read_frame(self, f: int, out=None) -> np.ndarray:
        """Frame ``f`` as float32 ``(H, W)``, read into ``out`` when given (C-contiguous float32)."""
        frame = np.empty(self.shape[1:], np.float32) if out is None else out
        self._fh.seek(int(f) * self._frame_bytes)
        if self._fh.readinto(memoryview(frame).cast("B")) != self._frame_bytes:
            raise OSError(f"scratch frame {f} could not be read back from {self._fh.name}")
        return frame

    def close(self) -> None:
        self._fh.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def as_frames(stack):
    """A frame source as is; an array ``(n_tilts, H, W)`` wrapped in :class:`ArrayFrames`."""
    return stack if hasattr(stack, "read_frame") else ArrayFrames(stack)
