#!/usr/bin/env python3
"""Copy the bullets of docs/DEVIATIONS.md into README.rst's "Deviations from RELION" section.

docs/DEVIATIONS.md is where every engineer appends a deviation; README.rst (the PyPI page, which cannot
include other files) carries a copy between the ``.. deviations-start`` / ``.. deviations-end`` comments.

    python .ci/sync_readme.py          # rewrite README.rst
    python .ci/sync_readme.py --check  # exit 1 if README.rst is out of date (the test suite runs this)
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
START, END = ".. deviations-start", ".. deviations-end"


def _inline(text: str) -> str:
    """Markdown inline markup to RST: `code` -> ``code``; **bold** keeps no nested markup (RST forbids it)."""
    parts = re.split(r"(\*\*.+?\*\*)", text)
    out = []
    for part in parts:
        if part.startswith("**") and part.endswith("**"):
            out.append("**" + part[2:-2].replace("`", "") + "**")
        else:
            out.append(re.sub(r"(?<!`)`([^`]+)`(?!`)", r"``\1``", part))
    return "".join(out)


def deviation_bullets(markdown: str) -> list[str]:
    """The top-level bullets of the Markdown file, each joined onto one line."""
    bullets, current = [], None
    for line in markdown.splitlines():
        if line.startswith("- "):
            if current is not None:
                bullets.append(current)
            current = line[2:].strip()
        elif current is not None and line.strip() and line.startswith((" ", "\t")):
            current += " " + line.strip()
        elif current is not None and not line.strip():
            bullets.append(current)
            current = None
    if current is not None:
        bullets.append(current)
    return bullets


def section_text(markdown: str) -> str:
    return "\n".join(f"- {_inline(b)}" for b in deviation_bullets(markdown))


def synced_readme(readme: str, markdown: str) -> str:
    if START not in readme or END not in readme:
        raise SystemExit(f"README.rst lacks the {START!r} / {END!r} markers")
    head, rest = readme.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n\n{section_text(markdown)}\n\n{END}{tail}"


def main(argv) -> int:
    readme_path, md_path = REPO / "README.rst", REPO / "docs" / "DEVIATIONS.md"
    readme, markdown = readme_path.read_text(), md_path.read_text()
    new = synced_readme(readme, markdown)
    if "--check" in argv:
        if new != readme:
            print("README.rst's 'Deviations from RELION' section differs from docs/DEVIATIONS.md; "
                  "run: python .ci/sync_readme.py", file=sys.stderr)
            return 1
        return 0
    readme_path.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
