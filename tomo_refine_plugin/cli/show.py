"""``tomo-refine show``: render program outputs to PNG.

``tomo-refine show subtomo --i <particles.star> [--n 4] --out fig.png``: central XY/XZ/YZ slices of the
pseudo-subtomograms, their CTF² and multiplicity, one row per particle.
"""
from __future__ import annotations


def add_arguments(parser) -> None:
    parser.add_argument("what", choices=("subtomo",), help="what to show")
    parser.add_argument("--i", required=True, help="particles.star written by subtomo")
    parser.add_argument("--n", type=int, default=4, help="number of particles (rows)")
    parser.add_argument("--out", required=True, help="output PNG")


def run(args) -> int:
    from ..compute.plots import subtomo_slices_figure

    fig = subtomo_slices_figure(args.i, args.n, args.out)
    import matplotlib.pyplot as plt

    plt.close(fig)
    print(f"wrote {args.out}")
    return 0
