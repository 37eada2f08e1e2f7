"""The ``tomo-refine`` command line: one subcommand per program, RELION's flag names.

Each subcommand module defines ``add_arguments(parser)`` and ``run(args) -> int``. :func:`main` imports
only the module of the subcommand it runs (the others get a help-only parser), and the modules import
the engine inside ``run``: start-up is part of every run's wall time, and numba, pandas and scipy cost
about 0.6 s and 180 MB to import.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

from ..compute.errors import InputError

SUBCOMMANDS = {
    "simulate": "Write a simulated RELION-5 dataset with its ground truth",
    "subtomo": "Make pseudo-subtomograms (drop-in for relion_tomo_subtomo)",
    "align": "Refine tilt-series projections and particle positions (drop-in for relion_tomo_align)",
    "reconstruct": "Reconstruct half maps from particles (relion_tomo_reconstruct_particle)",
    "demo": "Simulate, align, make pseudo-subtomograms and reconstruct a small dataset",
    "show": "Render outputs (pseudo-subtomograms, reports) to PNG",
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The full parser, or (``only``) one whose other subcommands are registered by name and help only."""
    parser = argparse.ArgumentParser(prog="tomo-refine", description=__doc__.splitlines()[0])
    from .. import __version__

    parser.add_argument("--version", action="version", version=f"tomo-refine {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, help_text in SUBCOMMANDS.items():
        if only is not None and name != only:
            sub.add_parser(name, help=help_text, description=help_text)
            continue
        module = importlib.import_module(f".{name}", __name__)
        p = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def _chosen_subcommand(argv) -> str | None:
    # the top-level options (--help, --version) take no value, so the first word is the subcommand
    words = [a for a in argv if not a.startswith("-")]
    return words[0] if words and words[0] in SUBCOMMANDS else None


def _hide_pyarrow() -> None:
    """Make ``import pyarrow`` fail in this process unless something imported it already.

    pandas imports pyarrow eagerly when it is installed (string storage), which costs ~40 MB and 70 ms
    of every run even where it then fails (pyarrow >= 16 refuses numpy 1.x); no tomo-refine program uses
    it, and pandas works the same without it (python string storage). Only the command line does this:
    it owns its process, a library import must not.
    """
    if "pyarrow" not in sys.modules and not os.environ.get("TOMO_REFINE_ALLOW_PYARROW"):
        sys.modules["pyarrow"] = None


def _quiet_openmp_threads() -> None:
    """Let idle OpenMP workers sleep instead of spinning (unless the user chose a policy).

    numba's parallel kernels run on OpenMP; between kernels the main thread does FFTs and numpy work,
    and spinning workers take the cores it needs: on the 2-core benchmark machine the subtomo run used
    ~6 s of CPU with the default policy and ~4.7 s with PASSIVE, at equal or better wall time. Set before
    the OpenMP runtime loads (at numba's first parallel kernel).
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def main(argv=None) -> int:
    """Run a subcommand; returns the exit status.

    With ``argv=None`` (the ``tomo-refine`` script, ``python -m tomo_refine_plugin``) the process ends
    here once the outputs are written: the interpreter's teardown (LLVM and OpenMP runtimes, module
    cleanup) adds ~0.2 s to every run and does nothing for a finished command. Set
    ``TOMO_REFINE_FULL_EXIT=1`` to return normally instead.
    """
    as_script = argv is None
    rc = _main(sys.argv[1:] if argv is None else list(argv))
    if as_script and not os.environ.get("TOMO_REFINE_FULL_EXIT"):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(rc)
    return rc


def _main(argv) -> int:
    _hide_pyarrow()
    _quiet_openmp_threads()
    chosen = _chosen_subcommand(argv)
    parser = build_parser(only=chosen) if chosen else build_parser(only="")
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 1
    try:
        return int(args._run(args) or 0)
    except InputError as exc:
        print(f"tomo-refine {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"tomo-refine {args.command}: interrupted; rerun with --only_do_unfinished to resume", file=sys.stderr)
        return 130
