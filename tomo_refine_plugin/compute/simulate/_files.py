"""STAR/MRC writing for the simulator through the engine's io module.

Kept behind two small functions so that the simulator writes files exactly as the rest of the engine
does (``# version 50001`` headers, atomic renames, mode-2 MRC).
"""
from __future__ import annotations

from ..io.mrc import write_mrc
from ..io.star import format_vector, write_star

__all__ = ["write_star", "write_mrc", "format_vector"]
