"""Turn a RELION 5 dataset folder (the simulator's output, or a golden dataset) into the files Scipion's
tomo importers read, plus the plugin's test fixture files.

Per tilt series ``<ts>``: ``<ts>.mrcs`` (link to the stack), ``<ts>.tlt`` (YTilt and accumulated dose),
``<ts>.xf`` (IMOD transforms from ZRot and shifts, :func:`compute.imod.relion_to_imod`), ``<ts>.defocus``
(U V angle), a small empty tomogram ``<ts>.mrc`` binned ``tomo_bin`` times (only its size and pixel size
matter), and ``<ts>.txt`` coordinates (bottom-left tomogram px). XTilt has no place in an IMOD transform
and is dropped, so the imported geometry is the dataset's minus its XTilt.
"""
from __future__ import annotations

import os
from pathlib import Path

import mrcfile
import numpy as np

from tomo_refine_plugin.compute.imod import relion_to_imod
from tomo_refine_plugin.compute.io.particles import read_particle_set
from tomo_refine_plugin.compute.io.tomograms import read_tomogram_set, split_image_name


def build_scipion_files(dataset_dir, out_dir, tomo_bin=8, copies=None):
    """Write the import files; returns a dict of the numbers the importers need.

    ``copies``: {new tsId: source tsId} to add extra tilt series that reuse a source series' data (a
    second tomogram for resume tests); default: the dataset's own series.
    """
    dataset_dir = Path(dataset_dir).absolute()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cwd = os.getcwd()
    os.chdir(dataset_dir)  # the STAR files' relative paths resolve from the dataset folder
    try:
        tset = read_tomogram_set("tomograms.star")
        pset = read_particle_set("particles.star")
        names = tset.names()
        copies = copies or {n: n for n in names}
        info = {}
        for new, src in copies.items():
            table = tset.tilt_table(src)
            geometry = tset.geometry(src)
            optics = tset.optics(src)
            pix = tset.pixel_size_angst(src)
            size = tset.tomo_size_px(src)
            section, stack = split_image_name(table["rlnMicrographName"].iloc[0])
            stack = Path(stack).absolute()
            link = out_dir / f"{new}.mrcs"
            if link.is_symlink() or link.exists():
                link.unlink()
            os.symlink(stack, link)
            dose = np.asarray(optics.pre_exposure_e_per_angst2, float)
            order = np.argsort(np.argsort(dose, kind="stable"), kind="stable")
            steps = np.diff(np.sort(dose))
            dose_per_tilt = float(np.median(steps[steps > 0])) if np.any(steps > 0) else 1.0
            np.savetxt(out_dir / f"{new}.tlt", np.stack([geometry.y_tilt_deg, dose + dose_per_tilt], 1), fmt="%.6f")
            xf = relion_to_imod(geometry.z_rot_deg, geometry.shift_angst[:, 0], geometry.shift_angst[:, 1], pix,
                                geometry.image_size_px)
            np.savetxt(out_dir / f"{new}.xf",
                       np.stack([xf[:, 0, 0], xf[:, 0, 1], xf[:, 1, 0], xf[:, 1, 1], xf[:, 0, 2], xf[:, 1, 2]], 1),
                       fmt="%.9f")
            np.savetxt(out_dir / f"{new}.defocus",
                       np.stack([optics.defocus_u_angst, optics.defocus_v_angst, optics.defocus_angle_deg], 1),
                       fmt="%.4f")
            tomo_dim = tuple(int(round(s / tomo_bin)) for s in size)
            with mrcfile.new(out_dir / f"{new}.mrc", overwrite=True) as m:
                m.set_data(np.zeros(tomo_dim[::-1], np.float32))
                m.voxel_size = pix * tomo_bin
            rows = pset.for_tomogram(src)
            centred = pset.centred_angst(rows, size, pix)
            bl = centred / (pix * tomo_bin) + np.asarray(tomo_dim, float) / 2.0
            np.savetxt(out_dir / f"{new}.txt", bl, fmt="%.6f")
            info[new] = dict(source=src, pixel_size=pix, tomo_pixel_size=pix * tomo_bin, tomo_dim=tomo_dim,
                             n_tilts=len(table), n_particles=len(rows), dose_per_tilt=dose_per_tilt,
                             order=order, voltage=float(tset.row(src)["rlnVoltage"]),
                             cs=float(tset.row(src)["rlnSphericalAberration"]),
                             q0=float(tset.row(src)["rlnAmplitudeContrast"]),
                             tilt_axis=float(np.median(geometry.z_rot_deg)))
        # One particles.star with every copy's rows renamed, for the fixture's orientation assignment.
        frames = []
        for new, src in copies.items():
            rows = pset.for_tomogram(src).copy()
            rows["rlnTomoName"] = new
            rows["rlnTomoParticleName"] = [f"{new}/{k + 1}" for k in range(len(rows))]
            frames.append(rows)
        import pandas as pd

        from tomo_refine_plugin.compute.io.star import write_star

        write_star({"particles": pd.concat(frames, ignore_index=True)}, out_dir / "orientations.star")
    finally:
        os.chdir(cwd)
    return info
