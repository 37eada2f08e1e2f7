"""``tomo-refine simulate``: write a simulated RELION-5 dataset with its ground truth.

Every field of :class:`~tomo_refine_plugin.compute.simulate.SimulationOptions` is a flag of the same name.
"""
from __future__ import annotations

import argparse
import dataclasses
from ..compute.errors import InputError
from ..compute.simulate import SimulationOptions, simulate_dataset


def _bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="output folder (the dataset root; STAR paths are relative to it)")
    for f in dataclasses.fields(SimulationOptions):
        meta = dict(f.metadata)
        help_text = meta.pop("help")
        default = f.default
        kwargs = {"default": default, "help": f"{help_text} (default: {default})"}
        if isinstance(default, bool):
            kwargs.update(type=_bool, metavar="BOOL")
        elif isinstance(default, tuple):
            kwargs.update(nargs=meta["nargs"], type=meta["type"])
        else:
            kwargs["type"] = type(default) if not isinstance(default, float) else float
            if "choices" in meta:
                kwargs["choices"] = meta["choices"]
        parser.add_argument(f"--{f.name}", **kwargs)


def options_from_args(args) -> SimulationOptions:
    """The :class:`SimulationOptions` named by parsed flags; inconsistent values raise :class:`InputError`."""
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(SimulationOptions)}
    try:
        return SimulationOptions(**values)
    except ValueError as exc:
        raise InputError(str(exc), field="tomo-refine simulate options", fix="see tomo-refine simulate --help") from exc


def run(args) -> int:
    options = options_from_args(args)
    try:
        result = simulate_dataset(args.out, options)
    except ValueError as exc:  # e.g. the particles do not fit (placement); the message names the option
        raise InputError(str(exc), field="tomo-refine simulate options", fix="see tomo-refine simulate --help") from exc
    print(f"dataset: {result.optimisation_set_star}")
    print(f"truth:   {result.truth_optimisation_set_star}")
    return 0
