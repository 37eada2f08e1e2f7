"""Test configuration: where the golden data lives, and a headless Scipion environment.

The Scipion variables are set here (not only in .ci/run) so that a plain ``pytest`` works:
pyworkflow needs a domain, a hosts.conf and the interpreter for its run subprocess, and on
Python >= 3.11 it deadlocks on sqlite locks unless the journal is in WAL mode
(see ../shared/research/scipion_conventions.md §5.3).
"""
from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DATA = Path(__file__).resolve().parent / "data"


def _setup_scipion_env() -> None:
    # One folder per test session: two pytest runs sharing projects (same names, same sqlite files)
    # break each other with "readonly database" errors. Set TOMO_REFINE_SCIPION_ROOT to keep one.
    if "TOMO_REFINE_SCIPION_ROOT" in os.environ:
        root = Path(os.environ["TOMO_REFINE_SCIPION_ROOT"])
    else:
        root = Path(tempfile.mkdtemp(prefix="tomo_refine_scipion_"))
        atexit.register(shutil.rmtree, root, ignore_errors=True)
    (root / "config").mkdir(parents=True, exist_ok=True)
    hosts = root / "config" / "hosts.conf"
    if not hosts.exists():
        hosts.write_text("[localhost]\nPARALLEL_COMMAND = mpirun -np %_(JOB_NODES)d --map-by node %_(COMMAND)s\n")
    defaults = {
        "SCIPION_HOME": str(root),
        "SCIPION_HOSTS": str(hosts),
        "SCIPION_DOMAIN": "pwem",
        "SCIPION_USER_DATA": str(root / "userdata"),
        "SCIPION_TESTS": str(root / "tests"),
        "SCIPION_TEST_NOSYNC": "1",
        "SCIPION_PYTHON": sys.executable,
        "SCIPION_NOTIFY": "False",
        "SQLITE_JOURNAL_MODE": "WAL",
        "MPLBACKEND": "Agg",
    }
    for key, value in defaults.items():
        os.environ.setdefault(key, value)
    # The protocol run subprocess is started by name; make sure it is this interpreter's environment.
    bindir = str(Path(sys.executable).parent)
    if not os.environ.get("PATH", "").startswith(bindir):
        os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")


_setup_scipion_env()


def golden_root() -> Path:
    """The golden datasets: $TOMO_REFINE_GOLDEN, else ../shared/golden beside the checkout (CI has it there)."""
    env = os.environ.get("TOMO_REFINE_GOLDEN")
    return Path(env) if env else REPO.parent / "shared" / "golden"


@pytest.fixture(scope="session")
def golden_dir() -> Path:
    root = golden_root()
    if not root.is_dir():
        pytest.fail(f"golden data not found at {root}; set TOMO_REFINE_GOLDEN to the shared/golden folder")
    return root


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA
