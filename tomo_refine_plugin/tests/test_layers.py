"""Layering: the engine must import and work without any Scipion module (pyworkflow, pwem, tomo).

The package's top-level ``__init__`` defines the Scipion ``Plugin`` only when pwem imports, so the
check runs the import with Scipion made unavailable: any engine module that imports pyworkflow, pwem
or tomo (directly or through another module) then fails to import, and nothing of Scipion may be
loaded at the end.
"""
from __future__ import annotations

import importlib.util
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


# The same with Scipion importable: the package's lazy Plugin must not pull pyworkflow/pwem/tomo in when
# only the engine is imported (the demand, on the machines where users have Scipion).
SCRIPT_WITH_SCIPION = r"""
import importlib.util, pkgutil, sys
installed = [m for m in ("pyworkflow", "pwem", "tomo") if importlib.util.find_spec(m) is not None]
import tomo_refine_plugin.compute as compute
names = [m.name for m in pkgutil.walk_packages(compute.__path__, compute.__name__ + ".")]
for name in names:
    __import__(name)
bad = sorted(m for m in sys.modules if m.split(".")[0] in ("pyworkflow", "pwem", "tomo"))
assert not bad, bad
assert "matplotlib" not in sys.modules, "matplotlib must be imported lazily inside plotting functions"
print(",".join(installed) or "-")
print(len(names))
"""

# What the command line imports to run one subcommand: only the engine modules it needs.
SCRIPT_CLI = r"""
import sys
from tomo_refine_plugin.cli import build_parser
build_parser(only="subtomo").parse_args(["subtomo", "--b", "8", "--o", "out"])
heavy = sorted(m for m in ("numpy", "numba", "pandas", "scipy", "mrcfile", "starfile") if m in sys.modules)
assert not heavy, f"registering the subtomo flags imported {heavy}"
import tomo_refine_plugin.compute.subtomo.program
unneeded = sorted(m for m in sys.modules if m.split(".")[0] in ("matplotlib", "pyworkflow", "pwem", "tomo")
                  or m.startswith(("scipy.optimize", "tomo_refine_plugin.compute.align",
                                   "tomo_refine_plugin.compute.simulate")))
assert not unneeded, unneeded
"""


def _run(script):
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout.strip().splitlines()


def test_engine_imports_no_scipion_module():
    assert int(_run(SCRIPT)[-1]) >= 8


def test_engine_import_leaves_scipion_alone_where_scipion_is_installed():
    installed, n_modules = _run(SCRIPT_WITH_SCIPION)[-2:]
    assert int(n_modules) >= 8
    # the CI environment has Scipion (scipion-pyworkflow, scipion-em, scipion-em-tomo): the check is real there
    assert installed == "pyworkflow,pwem,tomo" or importlib.util.find_spec("pyworkflow") is None, installed


def test_subtomo_command_imports_only_what_it_needs():
    _run(SCRIPT_CLI)
