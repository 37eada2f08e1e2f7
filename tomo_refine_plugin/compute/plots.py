"""Figures drawn from engine outputs (matplotlib is imported lazily inside each function, Agg backend)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import InputError
from .fourier.insert import half_grid_to_full_centred
from .io.mrc import read_mrc
from .io.star import read_star, require_columns, require_table

__all__ = ["central_slices", "subtomo_slices_figure"]


def central_slices(volume) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Central XY, XZ and YZ sections of a ``(z, y, x)`` volume: ``vol[s/2]``, ``vol[:, s/2]``, ``vol[:, :, s/2]``."""
    v = np.asarray(volume)
    return v[v.shape[0] // 2], v[:, v.shape[1] // 2], v[:, :, v.shape[2] // 2]


def _resolve(name: str, star_path: Path) -> Path:
    p = Path(name)
    for cand in (p, star_path.parent / p, star_path.parent.parent / p):
        if cand.exists():
            return cand
    raise InputError(f"image {name} not found", path=star_path, field="data_particles/rlnImageName",
                     fix="run from the directory subtomo ran in, or next to its output")


def subtomo_slices_figure(particles_star, n_particles: int = 4, out_png=None):
    """Central XY/XZ/YZ slices of pseudo-subtomograms: data, CTF² and multiplicity, one row per particle.

    For ``--stack2d`` output the row shows the first, middle and last images of each particle's stack.

    Parameters
    ----------
    particles_star
        ``particles.star`` written by ``tomo-refine subtomo`` (or ``relion_tomo_subtomo``).
    n_particles
        Number of particles (rows), from the top of the file.
    out_png
        If given, the figure is saved there (PNG).

    Returns
    -------
    figure
        The matplotlib figure.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    star = Path(particles_star)
    blocks = read_star(star)
    particles = require_table(blocks, "particles", star)
    require_columns(particles, ("rlnImageName",), star, "particles")
    rows = particles.iloc[: max(1, int(n_particles))]
    is_2d = "rlnCtfImage" not in rows.columns
    n_cols = 3 if is_2d else 9
    fig, axes = plt.subplots(len(rows), n_cols, figsize=(1.6 * n_cols, 1.7 * len(rows) + 0.4), squeeze=False)
    titles = (["first", "middle", "last"] if is_2d else
              ["data XY", "data XZ", "data YZ", "log CTF² XY", "log CTF² XZ", "log CTF² YZ", "log mult XY",
               "log mult XZ", "log mult YZ"])
    for r, (_, row) in enumerate(rows.iterrows()):
        data, _ = read_mrc(_resolve(str(row["rlnImageName"]), star))
        data = np.asarray(data, np.float32)
        if is_2d:
            panels = [data[0], data[len(data) // 2], data[-1]]
        else:
            weights, _ = read_mrc(_resolve(str(row["rlnCtfImage"]), star))
            weights = np.asarray(weights, np.float32)
            s = weights.shape[1]
            ctf2 = half_grid_to_full_centred(weights[:s])
            mult = half_grid_to_full_centred(weights[s:])
            # Sums of slices span orders of magnitude (every tilt passes through the tilt axis), so the
            # weights are shown on a log scale: the sampled wedge and the CTF rings both stay visible.
            panels = [*central_slices(data), *(np.log1p(np.maximum(p, 0) / max(float(p.max()), 1e-12) * 1e3)
                                               for p in (*central_slices(ctf2), *central_slices(mult)))]
        for c, img in enumerate(panels):
            ax = axes[r, c]
            ax.imshow(img, cmap="gray", origin="lower", interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(titles[c], fontsize=8)
        axes[r, 0].set_ylabel(str(row.get("rlnTomoParticleName", r + 1)), fontsize=8)
    fig.tight_layout()
    if out_png is not None:
        fig.savefig(out_png, dpi=100)
    return fig
