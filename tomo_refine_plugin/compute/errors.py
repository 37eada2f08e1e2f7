"""Errors the engine raises for bad input.

Every message names the file, the table or column (or row), and what the user can do about it,
so that the CLI can print it as-is and exit non-zero.
"""
from __future__ import annotations

__all__ = ["InputError"]


class InputError(ValueError):
    """Bad user input: a missing file, column or table, or inconsistent values.

    Parameters
    ----------
    message
        What is wrong.
    path
        The file concerned, if any.
    field
        The STAR column, table, row or option concerned, if any.
    fix
        What the user should do.
    """

    def __init__(self, message: str, path=None, field: str | None = None, fix: str | None = None):
        self.path = None if path is None else str(path)
        self.field = field
        self.fix = fix
        parts = []
        if self.path:
            parts.append(f"{self.path}")
        if field:
            parts.append(f"[{field}]")
        head = " ".join(parts)
        text = f"{head}: {message}" if head else message
        if fix:
            text += f"\n  fix: {fix}"
        super().__init__(text)
