"""What the program subcommands share: the input flags, flags → options, and the command for note.txt.

Imports nothing heavy: registering the flags of one subcommand must stay cheap.
"""
from __future__ import annotations

import os
import shlex
import sys

__all__ = ["add_input_arguments", "options_from_args", "invoked_command"]


def add_input_arguments(parser, title="Input (an explicit --p/--t/--mot overrides the entry of --i)",
                        mot_help="particle trajectories (motion.star)"):
    """``--i --p --t --mot`` as RELION names them; returns the group so a program can add its own inputs."""
    g = parser.add_argument_group(title)
    g.add_argument("--i", help="optimisation set STAR")
    g.add_argument("--p", help="particle set STAR")
    g.add_argument("--t", help="tomogram set STAR")
    g.add_argument("--mot", help=mot_help)
    return g


def options_from_args(options_cls, args):
    """The ``options_cls`` dataclass of parsed arguments (fields = flag names); ``--only_tomos a,b`` → tuple."""
    values = {k: v for k, v in vars(args).items() if k in options_cls.__dataclass_fields__}
    if values.get("only_tomos"):
        values["only_tomos"] = tuple(t for t in values["only_tomos"].split(",") if t)
    return options_cls(**values)


def invoked_command() -> str | None:
    """The real command line when this process is the ``tomo-refine`` script; None when a program is called
    in-process (the engine then rebuilds the command from its options for note.txt)."""
    if os.path.basename(sys.argv[0]) != "tomo-refine":
        return None
    return "tomo-refine " + " ".join(shlex.quote(a) for a in sys.argv[1:])
