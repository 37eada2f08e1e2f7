"""``tomo-refine reconstruct``: half maps and FSC from particles (``relion_tomo_reconstruct_particle`` flags)."""
from __future__ import annotations

from ._common import add_input_arguments, invoked_command, options_from_args

# The engine is imported in run(): registering the flags must stay cheap.


def add_arguments(parser) -> None:
    add_input_arguments(parser)
    g = parser.add_argument_group("Reconstruction")
    g.add_argument("--b", type=int, required=True, help="box size (binned px, even)")
    g.add_argument("--crop", type=int, default=-1, help="centre-crop the output maps to this size (tapered)")
    g.add_argument("--bin", type=float, default=1.0, help="binning factor")
    g.add_argument("--SNR", type=float, default=-1.0, help="Wiener SNR (<=0: RELION's heuristic)")
    g.add_argument("--no_ctf", action="store_true", help="do not apply CTFs (nor dose weights)")
    g.add_argument("--no_circle_crop", action="store_true", help="do not circle-crop the 2D images")
    g.add_argument("--cutoff_fract", type=float, default=0.01, help="ignore frequencies with dose weight <= this")
    g.add_argument("--taper", type=float, default=10.0, help="taper width (px) when cropping")
    g.add_argument("--j", type=int, default=6, help="threads")
    g.add_argument("--o", required=True, help="output directory")


def run(args) -> int:
    from ..compute.reconstruct import ReconstructOptions, run_reconstruct

    result = run_reconstruct(options_from_args(ReconstructOptions, args), command=invoked_command())
    print(f"wrote {result.half1}, {result.half2}, {result.merged} and {result.fsc_star}")
    return 0
