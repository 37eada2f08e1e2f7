"""``note.txt``: the command a program's output folder came from, as RELION writes it."""
from __future__ import annotations

import dataclasses
from pathlib import Path

from .atomic import atomic_write_text

__all__ = ["command_line", "write_note"]


def command_line(program: str, options) -> str:
    """``tomo-refine <program>`` with the options that differ from their defaults, as flags.

    ``options`` is a frozen options dataclass whose field names are the flag names; ``o`` and ``b`` (the
    required ones) always appear. Booleans become bare flags, tuples comma-separated lists.
    """
    parts = [f"tomo-refine {program}"]
    for f in dataclasses.fields(options):
        value = getattr(options, f.name)
        required = f.default is dataclasses.MISSING
        if not required and value == f.default:
            continue
        if isinstance(value, bool):
            if value:
                parts.append(f"--{f.name}")
        elif isinstance(value, tuple):
            parts.append(f"--{f.name} {','.join(value)}")
        elif value is not None:
            parts.append(f"--{f.name} {value}")
    return " ".join(parts)


def write_note(out_dir, program: str, options, command: str | None = None) -> None:
    """Write ``<out_dir>/note.txt`` with ``command``, or the one rebuilt from ``options``."""
    atomic_write_text(Path(out_dir) / "note.txt", f"Command:\n\n{command or command_line(program, options)}\n")
