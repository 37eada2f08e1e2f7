"""Scipion objects ↔ the engine's RELION 5 files.

Scipion → RELION: a SetOfTiltSeries (with its IMOD-style 2D alignment), its SetOfCTFTomoSeries and
the tomograms become ``tomograms.star`` + one ``<tsId>.star`` per tilt series; coordinates or
subtomograms become ``particles.star``. RELION → Scipion: the refined per-tilt angles and shifts go
back into new 2D transforms (XTilt, which a 2D transform cannot hold, is kept as an extra attribute
``_tomoRefineXTilt`` on each tilt image and read back from there), refined positions go back into
Coordinate3D. The math is in :mod:`.compute.imod`; this module only walks the Scipion objects.
"""
from __future__ import annotations

import os

import numpy as np
import pandas as pd

from .compute.conventions import euler_zyz_to_matrix, matrix_to_euler_zyz
from .compute.errors import InputError
from .compute.imod import centred_angst_to_scipion, imod_to_relion, relion_to_imod, scipion_to_centred_angst
from .compute.io.star import write_star
from .constants import ATTR_PARTICLE_NAME, ATTR_X_TILT

__all__ = [
    "TiltSeriesInfo",
    "tilt_series_table",
    "tomogram_row",
    "write_tomograms_star",
    "particle_rows",
    "write_particles_star",
    "relion_matrix_from_scipion",
    "scipion_matrix_from_relion",
    "refined_transforms",
    "refined_positions",
    "ctf_by_tilt",
]

#: rlnTomoHand written for every tomogram: −1 means "defocus decreases with z" (RELION's default).
DEFAULT_HAND = -1.0


class TiltSeriesInfo:
    """What the STAR writers need from one Scipion tilt series, read once (plain values, no sqlite)."""

    def __init__(self, ts, ctf_series, tomogram=None, hand=DEFAULT_HAND):
        self.ts_id = ts.getTsId()
        self.pixel_size_angst = float(ts.getSamplingRate())
        acq = ts.getAcquisition()
        self.voltage_kv = float(acq.getVoltage())
        self.cs_mm = float(acq.getSphericalAberration())
        self.amplitude_contrast = float(acq.getAmplitudeContrast())
        self.tilt_axis_deg = float(acq.getTiltAxisAngle() or 0.0)
        self.hand = float(hand)
        dims = ts.getDim()
        self.image_size_px = (int(dims[0]), int(dims[1]))
        self.table = tilt_series_table(ts, ctf_series, self.image_size_px, self.pixel_size_angst, self.tilt_axis_deg)
        if tomogram is not None:
            tdim = tomogram.getDim()
            scale = float(tomogram.getSamplingRate()) / self.pixel_size_angst
            self.tomo_size_px = tuple(int(round(d * scale)) for d in tdim)
        else:
            self.tomo_size_px = None


def ctf_by_tilt(ctf_series):
    """{acquisition order: CTFTomo clone} and {index: clone} of a CTFTomoSeries (enabled items only)."""
    by_order, by_index = {}, {}
    for ctf in ctf_series.iterItems():
        if not ctf.isEnabled():
            continue
        c = ctf.clone()
        order = c.getAcquisitionOrder() if hasattr(c, "getAcquisitionOrder") else None
        if order is not None:
            by_order[int(order)] = c
        if c.getIndex() is not None:
            by_index[int(c.getIndex())] = c
    return by_order, by_index


def tilt_series_table(ts, ctf_series, image_size_px, pixel_size_angst, tilt_axis_deg) -> pd.DataFrame:
    """The RELION 5 per-tilt table of one Scipion tilt series (enabled tilt images, stack order).

    A tilt series without alignment gets the nominal geometry (ZRot = tilt-axis angle, no shifts),
    as RELION's importer does for a series that was never aligned.
    """
    by_order, by_index = ctf_by_tilt(ctf_series)
    rows = []
    for ti in ts.iterItems(orderBy="_index"):
        if not ti.isEnabled():
            continue
        ti = ti.clone()
        order = ti.getAcquisitionOrder()
        ctf = by_order.get(int(order)) if order is not None and int(order) in by_order else by_index.get(ti.getIndex())
        if ctf is None:
            raise InputError(
                f"tilt series {ts.getTsId()}: no CTF for tilt image {ti.getIndex()} "
                f"(acquisition order {order}, tilt {ti.getTiltAngle():.2f}°)",
                field="inputCtfTomoSeries",
                fix="estimate the CTF of every enabled tilt image, or exclude that tilt image",
            )
        transform = ti.getTransform()
        if transform is not None and transform.getMatrix() is not None:
            m = np.array(transform.getMatrix(), dtype=np.float64)
            if m.shape == (4, 4):  # a few producers store the 2D transform padded to 4x4
                m = m[np.ix_([0, 1, 3], [0, 1, 3])]
        else:
            a = np.deg2rad(tilt_axis_deg)
            m = np.array([[np.cos(a), np.sin(a), 0.0], [-np.sin(a), np.cos(a), 0.0], [0.0, 0.0, 1.0]])
        tilt = float(ti.getTiltAngle())
        x_tilt = getattr(ti, ATTR_X_TILT, None)
        _, y_tilt, z_rot, sx, sy = imod_to_relion(m[None], [tilt], pixel_size_angst, image_size_px)
        acq = ti.getAcquisition()
        dose = acq.getDoseInitial() if acq is not None else None
        u, v, angle = ctf.getDefocusU(), ctf.getDefocusV(), ctf.getDefocusAngle()
        rows.append(
            {
                "rlnMicrographName": f"{ti.getIndex()}@{os.path.abspath(ti.getFileName())}",
                "rlnTomoNominalStageTiltAngle": tilt,
                "rlnTomoNominalTiltAxisAngle": tilt_axis_deg,
                "rlnMicrographPreExposure": float(dose or 0.0),
                "rlnDefocusU": float(u),
                "rlnDefocusV": float(v),
                "rlnDefocusAngle": float(angle),
                "rlnCtfScalefactor": float(np.cos(np.deg2rad(tilt))),
                "rlnTomoXTilt": float(x_tilt.get()) if x_tilt is not None and x_tilt.get() is not None else 0.0,
                "rlnTomoYTilt": float(y_tilt[0]),
                "rlnTomoZRot": float(z_rot[0]),
                "rlnTomoXShiftAngst": float(sx[0]),
                "rlnTomoYShiftAngst": float(sy[0]),
            }
        )
    if not rows:
        raise InputError(f"tilt series {ts.getTsId()} has no enabled tilt images", field="inputTiltSeries",
                         fix="enable at least the tilt images you want to use")
    return pd.DataFrame(rows)


def tomogram_row(info: TiltSeriesInfo) -> dict:
    """The ``data_global`` row of one tilt series."""
    if info.tomo_size_px is None:
        raise InputError(f"tilt series {info.ts_id}: no tomogram to take the size from", field="tomograms",
                         fix="give the tomograms the particles were picked on")
    return {
        "rlnTomoName": info.ts_id,
        "rlnVoltage": info.voltage_kv,
        "rlnSphericalAberration": info.cs_mm,
        "rlnAmplitudeContrast": info.amplitude_contrast,
        "rlnMicrographOriginalPixelSize": info.pixel_size_angst,
        "rlnTomoHand": info.hand,
        "rlnOpticsGroupName": "optics1",
        "rlnTomoTiltSeriesPixelSize": info.pixel_size_angst,
        "rlnTomoSizeX": info.tomo_size_px[0],
        "rlnTomoSizeY": info.tomo_size_px[1],
        "rlnTomoSizeZ": info.tomo_size_px[2],
    }


def write_tomograms_star(infos, path, tilt_series_dir="in_tilt_series") -> None:
    """Write ``tomograms.star`` (``data_global``) and ``<tilt_series_dir>/<tsId>.star`` beside it.

    ``rlnTomoTiltSeriesStarFile`` is absolute so the set can be read from any folder (the CLI, RELION).
    """
    path = os.path.abspath(path)
    folder = os.path.join(os.path.dirname(path), tilt_series_dir)
    rows = []
    for info in infos:
        ts_star = os.path.join(folder, f"{info.ts_id}.star")
        write_star({info.ts_id: info.table}, ts_star)
        row = tomogram_row(info)
        row["rlnTomoTiltSeriesStarFile"] = ts_star
        rows.append(row)
    write_star({"global": pd.DataFrame(rows)}, path)


def relion_matrix_from_scipion(matrix_relion_convention) -> np.ndarray:
    """RELION's Euler matrix ``A`` (:func:`.compute.conventions.euler_zyz_to_matrix`) from a Scipion 4×4
    matrix already converted with ``convention=TR_RELION``: ``A = inverse of its rotation block``
    (scipion-em-reliontomo's ``getTransformInfoFromCoordOrSubtomo``)."""
    m = np.asarray(matrix_relion_convention, dtype=np.float64)
    return np.linalg.inv(m[:3, :3])


def scipion_matrix_from_relion(a_relion, origin_angst=None, pixel_size_angst=1.0) -> np.ndarray:
    """The Scipion 4×4 matrix (to be set with ``convention=TR_RELION``) for RELION's ``A`` (inverse of
    :func:`relion_matrix_from_scipion`); translation ``−origin/pix`` as reliontomo writes it."""
    m = np.eye(4)
    m[:3, :3] = np.linalg.inv(np.asarray(a_relion, dtype=np.float64))
    if origin_angst is not None:
        m[:3, 3] = -np.asarray(origin_angst, float) / pixel_size_angst
    return m


def particle_rows(items, ts_pixel_size_angst: dict) -> pd.DataFrame:
    """``data_particles`` rows from Scipion particles.

    Parameters
    ----------
    items
        Iterable of ``(coordinate, matrix_relion_convention (4, 4), coordinate_pixel_size_angst, tomogram,
        object id)`` with the coordinate's tomogram attached; the object id (of the input coordinate or
        subtomogram) is written as ``sciObjId`` to map the engine's output rows back.
    ts_pixel_size_angst
        {tsId: tilt-series pixel size}, to check that the particle's tomogram has a tilt series.
    """
    from tomo.constants import SCIPION

    rows = []
    counters = {}
    for coord, matrix, coord_pix, tomo, obj_id in items:
        ts_id = coord.getTomoId() or tomo.getTsId()
        if ts_id not in ts_pixel_size_angst:
            raise InputError(
                f"a particle belongs to tomogram {ts_id!r}, which has no tilt series in the input "
                f"(tilt series: {sorted(ts_pixel_size_angst)})",
                field="inputParticles",
                fix="give particles picked on tomograms reconstructed from these tilt series",
            )
        pos = np.array(coord.getPosition(SCIPION), dtype=np.float64)
        origin = tomo.getShiftsFromOrigin() if tomo is not None else None
        dims = tomo.getDim()
        centred = scipion_to_centred_angst(pos[None], coord_pix, dims, origin)[0]
        a = relion_matrix_from_scipion(matrix)
        rot, tilt, psi = (float(v) for v in matrix_to_euler_zyz(a))
        shift_angst = -np.asarray(matrix, float)[:3, 3] * coord_pix
        counters[ts_id] = counters.get(ts_id, 0) + 1
        name = getattr(coord, ATTR_PARTICLE_NAME, None)
        name = name.get() if name is not None and name.get() else f"{ts_id}/{counters[ts_id]}"
        rows.append(
            {
                "rlnTomoName": ts_id,
                "rlnTomoParticleName": name,
                "rlnCenteredCoordinateXAngst": centred[0],
                "rlnCenteredCoordinateYAngst": centred[1],
                "rlnCenteredCoordinateZAngst": centred[2],
                "rlnOriginXAngst": shift_angst[0],
                "rlnOriginYAngst": shift_angst[1],
                "rlnOriginZAngst": shift_angst[2],
                "rlnTomoSubtomogramRot": rot,
                "rlnTomoSubtomogramTilt": tilt,
                "rlnTomoSubtomogramPsi": psi,
                "rlnAngleRot": 0.0,
                "rlnAngleTilt": 0.0,
                "rlnAnglePsi": 0.0,
                "rlnOpticsGroup": 1,
                "rlnRandomSubset": (len(rows) % 2) + 1,
                "sciObjId": int(obj_id),
            }
        )
    return pd.DataFrame(rows)


def write_particles_star(particles: pd.DataFrame, infos, path) -> None:
    """``particles.star`` with ``data_general``, ``data_optics`` (one group, from the first tilt series)
    and ``data_particles``."""
    info = infos[0]
    optics = pd.DataFrame(
        [
            {
                "rlnOpticsGroup": 1,
                "rlnOpticsGroupName": "optics1",
                "rlnSphericalAberration": info.cs_mm,
                "rlnVoltage": info.voltage_kv,
                "rlnAmplitudeContrast": info.amplitude_contrast,
                "rlnTomoTiltSeriesPixelSize": info.pixel_size_angst,
            }
        ]
    )
    write_star({"general": {"rlnTomoSubTomosAre2DStacks": 0}, "optics": optics, "particles": particles}, path)


def refined_transforms(tilt_table: pd.DataFrame, pixel_size_angst: float, image_size_px):
    """New 2D transforms ``(n_tilts, 3, 3)``, tilt angles and XTilts from a refined RELION per-tilt table."""
    z = tilt_table["rlnTomoZRot"].to_numpy(float)
    sx = tilt_table["rlnTomoXShiftAngst"].to_numpy(float)
    sy = tilt_table["rlnTomoYShiftAngst"].to_numpy(float)
    transforms = relion_to_imod(z, sx, sy, pixel_size_angst, image_size_px)
    x_tilt = tilt_table["rlnTomoXTilt"].to_numpy(float) if "rlnTomoXTilt" in tilt_table else np.zeros(len(z))
    return transforms, tilt_table["rlnTomoYTilt"].to_numpy(float), x_tilt


def refined_positions(particles: pd.DataFrame, coord_pixel_size_angst, tomo_dim_px, origin_shifts_angst=None):
    """Scipion stored positions ``(n, 3)`` px from refined RELION rows, offsets baked in.

    ``centred − A_sub·origin`` (RELION's particle position with offsets applied), then
    :func:`.compute.imod.centred_angst_to_scipion`.
    """
    centred = particles[[f"rlnCenteredCoordinate{a}Angst" for a in "XYZ"]].to_numpy(float)
    if all(f"rlnOrigin{a}Angst" in particles for a in "XYZ"):
        origin = particles[[f"rlnOrigin{a}Angst" for a in "XYZ"]].to_numpy(float)
        if all(c in particles for c in ("rlnTomoSubtomogramRot", "rlnTomoSubtomogramTilt", "rlnTomoSubtomogramPsi")):
            a_sub = euler_zyz_to_matrix(particles["rlnTomoSubtomogramRot"].to_numpy(float),
                                        particles["rlnTomoSubtomogramTilt"].to_numpy(float),
                                        particles["rlnTomoSubtomogramPsi"].to_numpy(float))
            origin = np.einsum("nij,nj->ni", a_sub, origin)
        centred = centred - origin
    return centred_angst_to_scipion(centred, coord_pixel_size_angst, tomo_dim_px, origin_shifts_angst)
