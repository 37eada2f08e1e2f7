"""Layering: the engine must import and work without any Scipion module (pyworkflow, pwem, tomo).

The package's top-level ``__init__`` defines the Scipion ``Plugin`` only when pwem imports, so the
check runs the import with Scipion made unavailable: any engine module that imports pyworkflow, pwem
or tomo (directly or through another module) then fails to import, and nothing of Scipion may be
loaded at the end.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

SCRIPT = r"""
import importlib.abc, pkgutil, sys

BLOCKED = ("pyworkflow", "pwem", "tomo")

class NoScipion(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"Scipion module {name} imported by the engine", name=name)
        return None

sys.meta_path.insert(0, NoScipion())
import tomo_refine_plugin.compute as compute
import tomo_refine_plugin.compute.io
names = [m.name for m in pkgutil.walk_packages(compute.__path__, compute.__name__ + ".")]
for name in names:
    __import__(name)
bad = sorted(m for m in sys.modules if m.startswith(("pyworkflow", "pwem", "tomo.")) or m == "tomo")
assert not bad, bad
assert "matplotlib" not in sys.modules, "matplotlib must be imported lazily inside plotting functions"
assert "tomo_refine_plugin.compute.io.tomograms" in sys.modules
print(len(names))
"""


def test_engine_imports_no_scipion_module():
    result = subprocess.run([sys.executable, "-c", SCRIPT], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert int(result.stdout.strip().splitlines()[-1]) >= 8
