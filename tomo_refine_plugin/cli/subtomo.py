"""``tomo-refine subtomo``: RELION's ``relion_tomo_subtomo`` flags, same meaning and defaults."""
from __future__ import annotations

from ._common import add_input_arguments, invoked_command
from ._common import options_from_args as _options_from_args

# The engine is imported in the functions that use it: registering the flags must stay cheap.


def add_arguments(parser) -> None:
    add_input_arguments(parser)
    g = parser.add_argument_group("Reconstruction")
    g.add_argument("--b", type=int, required=True, help="2D box size in binned pixels (even)")
    g.add_argument("--crop", type=int, default=-1, help="output box size (default: --b)")
    g.add_argument("--bin", type=float, default=1.0, help="binning factor")
    g.add_argument("--stack2d", action="store_true", help="write CTF-premultiplied 2D stacks instead of 3D")
    g.add_argument("--float16", action="store_true", help="write MRC mode 12 (float16) instead of mode 2")
    g.add_argument("--multi", action="store_true", help="also write the multiplicity volume _multi.mrc")
    g.add_argument("--no_comb", action="store_true", help="do not write the CTF²+multiplicity _weights.mrc")
    g.add_argument("--ctf", action="store_true", help="also write CTF² as a full centred volume _CTF2.mrc")
    g.add_argument("--div", action="store_true", help="also write the CTF-corrected _div.mrc")
    g.add_argument("--nrm", action="store_true", help="also write multiplicity-normalised _data_nrm/_CTF2_nrm.mrc")
    g.add_argument("--SNR", type=float, default=-1.0, help="Wiener SNR for --div (<=0: heuristic)")
    g.add_argument("--min_frames", type=int, default=1, help="drop particles with fewer visible frames")
    g.add_argument("--max_dose", type=float, default=-1.0, help="drop frames above this pre-exposure (e/A^2)")
    g.add_argument("--cone_weight", action="store_true", help="down-weight a double cone in Fourier space")
    g.add_argument("--cone_angle", type=float, default=10.0, help="cone opening angle (deg)")
    g.add_argument("--cone_sig0", type=float, default=2.0, help="cone width at z=0 (Fourier voxels)")
    g.add_argument("--cutoff_fract", type=float, default=0.01, help="skip frequencies with dose weight <= this")
    g.add_argument("--no_circle_crop", action="store_true", help="do not circle-mask the 2D images")
    g.add_argument("--circle_precrop", action="store_true", help="circle-mask the raw windows before the FFT")
    g.add_argument("--grid_precorr", action="store_true",
                   help="divide the 2D images by the trilinear-insertion envelope 1/sinc^2(r/crop) (3D only; "
                   "RELION's version is broken, see DEVIATIONS)")
    g.add_argument("--taper", type=float, default=5.0, help="taper width (px) for --div")
    g.add_argument("--env", type=float, default=-1.0, help="accepted and ignored (it does nothing in RELION either)")
    g.add_argument("--whiten", action="store_true",
                   help="whiten by each tilt image's radial power spectrum: data x w, weights x w^2 (RELION: x w)")
    g.add_argument("--no_center", action="store_true", help="no mean subtraction in the --div taper")
    g.add_argument("--no_ic", action="store_true", help="do not invert the contrast")
    g.add_argument("--no_ctf", action="store_true", help="no CTF and no dose weighting")
    g.add_argument("--apply_orientations", action="store_true", help="build the boxes in the particle frame")
    g.add_argument("--dont_apply_offsets", action="store_true", help="ignore rlnOrigin{X,Y,Z}Angst")
    g.add_argument("--real_subtomo", action="store_true", help="not supported by tomo-refine (error)")
    g.add_argument("--diag", action="store_true", help="accepted and ignored (it does nothing in RELION either)")
    g = parser.add_argument_group("Running")
    g.add_argument("--only_do_unfinished", action="store_true", help="skip particles whose output exists")
    g.add_argument("--j", type=int, default=6, help="threads")
    g.add_argument("--o", required=True, help="output directory")
    g.add_argument("--only_tomos", help="comma-separated tomograms to process (scale-out; then --merge_only)")
    g.add_argument("--merge_only", action="store_true", help="write the STAR files from finished tomograms")
    g.add_argument("--theme", help=argparse_suppress())
    g.add_argument("--pipeline_control", help=argparse_suppress())


def argparse_suppress():
    import argparse

    return argparse.SUPPRESS


def options_from_args(args):
    """The :class:`~..compute.subtomo.SubtomoOptions` of parsed arguments."""
    from ..compute.subtomo import SubtomoOptions

    return _options_from_args(SubtomoOptions, args)


def run(args) -> int:
    from ..compute.subtomo import run_subtomo

    opts = options_from_args(args)
    result = run_subtomo(opts, command=invoked_command())
    print(f"{result.n_written} particles written, {result.n_skipped} skipped (finished), "
          f"{result.n_dropped} dropped; outputs in {opts.out_prefix}")
    return 0
