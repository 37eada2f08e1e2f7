"""``tomo-refine align``: RELION's ``relion_tomo_align`` flags, same meaning and defaults (static model)."""
from __future__ import annotations

import argparse

from ._common import add_input_arguments, invoked_command
from ._common import options_from_args as _options_from_args

# The engine is imported in the functions that use it: registering the flags must stay cheap.


def add_arguments(parser) -> None:
    g = add_input_arguments(parser, title="Input (an explicit flag overrides the entry of --i)",
                            mot_help="particle trajectories (motion.star); the CC maps are centred on them")
    g.add_argument("--ref1", help="reference map, half 1")
    g.add_argument("--ref2", help="reference map, half 2")
    g.add_argument("--mask", help="reference mask")
    g.add_argument("--fsc", help="STAR file with the reference FSC")
    g.add_argument("--freq_cutoff", type=float, default=-1.0, help="explicit cutoff frequency in Å (<=0: off)")
    g.add_argument("--fsc_thresh_width", type=float, default=5.0, help="width of the frequency-weight flank (px)")
    g.add_argument("--use_SNR_weight", action="store_true", help="weight each shell by the reference SNR")
    g = parser.add_argument_group("General refinement")
    g.add_argument("--b", type=int, required=True, help="box size (px, even); the reference is zero-padded to it")
    g.add_argument("--o", required=True, help="output directory")
    g.add_argument("--only_do_unfinished", action="store_true", help="skip tomograms with results in <o>/temp")
    g.add_argument("--per_frame_noise", action="store_true", help="one noise spectrum per tilt")
    g.add_argument("--diag", action="store_true", help="also write <o>/diag_<tomo>_frq_weight.mrc (per-tilt "
                                                                 "frequency weights)")
    g.add_argument("--j", type=int, default=6, help="threads")
    g = parser.add_argument_group("Alignment")
    g.add_argument("--shift_only", action="store_true", help="only a rigid shift per tilt (no L-BFGS), from the sum "
                                                                "of its particles' CC maps; no particles.star")
    g.add_argument("--shift_only_by_particles", action="store_true", help="with --shift_only: the same (the "
                                                                             "particle-sum search is always used)")
    g.add_argument("--r", type=int, default=20, help="max. particle shift (px), at most box/2 − 3")
    g.add_argument("--const_p", action="store_true", help="keep the particle positions constant")
    g.add_argument("--const_a", action="store_true", help="keep the tilt angles constant")
    g.add_argument("--const_s", action="store_true", help="keep the tilt shifts constant")
    g.add_argument("--range_reg", type=float, default=0.0, help="weight of the range regulariser")
    g.add_argument("--aniso", action="store_true", help="ignored by RELION: refused (error)")
    g.add_argument("--per_tilt_aniso", action="store_true", help="ignored by RELION: refused (error)")
    g.add_argument("--it", type=int, default=10000, help="max. L-BFGS iterations (per round)")
    g = parser.add_argument_group("Motion and deformation (not yet available: refused with an error)")
    g.add_argument("--motion", action="store_true")
    g.add_argument("--s_vel", type=float, default=0.5)
    g.add_argument("--s_div", type=float, default=5000.0)
    g.add_argument("--abs_params", action="store_true")
    g.add_argument("--sq_exp_ker", action="store_true")
    g.add_argument("--max_ed", type=int, default=-1)
    g.add_argument("--deformation", action="store_true")
    g.add_argument("--def_w", type=int, default=3)
    g.add_argument("--def_h", type=int, default=3)
    g.add_argument("--def_model", default="spline")
    g.add_argument("--def_reg", type=float, default=0.0)
    g.add_argument("--per_frame_deformation", action="store_true")
    g = parser.add_argument_group("Expert")
    g.add_argument("--pad", type=int, default=1,
                   help="Fourier padding of the CC maps: samples per px, 1-4 (value and gradient consistent, unlike "
                        "RELION's pad > 1)")
    g.add_argument("--no_whiten", action="store_true", help="do not whiten the noise spectra")
    g.add_argument("--whiten_abs", action="store_true", help="ignored by RELION: refused (error)")
    g.add_argument("--hp", type=float, default=-1.0, help="high-pass sigma (Fourier px; <=0: off)")
    g.add_argument("--srp", type=float, default=0.0, help="noise variance divided by k^this during whitening")
    g.add_argument("--min_frame", type=int, default=0, help="first frame (chronological) to use")
    g.add_argument("--max_frame", type=int, default=-1, help="last frame to use (-1: last)")
    g.add_argument("--cutoff_fract", type=float, default=0.02, help="ignore frequencies whose weight or dose "
                                                                      "weight is below this fraction")
    g.add_argument("--keep_neighbours", action="store_true", help="not in RELION: skip the neighbour subtraction "
                   "before the last round (each CC map then also sees the neighbouring particles, as in RELION)")
    g = parser.add_argument_group("Scale-out")
    g.add_argument("--only_tomos", help="comma-separated tomograms to process (then --merge_only)")
    g.add_argument("--merge_only", action="store_true", help="write the STAR files from finished tomograms")
    g.add_argument("--theme", help=argparse.SUPPRESS)
    g.add_argument("--list_themes", action="store_true", help=argparse.SUPPRESS)
    g.add_argument("--pipeline_control", help=argparse.SUPPRESS)


def options_from_args(args):
    """The :class:`~..compute.align.program.AlignOptions` of parsed arguments."""
    from ..compute.align.program import AlignOptions

    return _options_from_args(AlignOptions, args)


def run(args) -> int:
    from ..compute.align.program import run_align

    opts = options_from_args(args)
    result = run_align(opts, command=invoked_command())
    if result.tomograms_star is not None:
        print(f"aligned {len(result.tomograms)} tomogram(s); outputs in {opts.o}, per-tilt report in {result.report_dir}")
    else:
        print(f"aligned {', '.join(result.tomograms)}; run with --merge_only to write the combined STAR files")
    return 0
