"""Interoperability with scipion-em-reliontomo (optional).

reliontomo's refine, classify, reconstruct, polish and CTF-refine protocols take their input through a
``PointerParam(pointerClass='RelionSetOfPseudoSubtomograms', strict=True)``: the GUI and
``Project.getProtocolCompatibleOutputs`` offer only objects whose class *is* that class (not a subclass,
not a look-alike). So when reliontomo is importable the pseudo-subtomogram protocol outputs a real
``reliontomo.objects.RelionSetOfPseudoSubtomograms`` of ``RelionPSubtomogram`` items, filled the way
reliontomo's own "Extract subtomos" (RELION 5) fills it; otherwise it outputs this plugin's
:class:`..objects.TomoRefineSetOfPseudoSubtomograms`, which has the same attribute and getter names.

reliontomo is not an install requirement: it pulls scipion-em-relion and scipion-em-imod, which are meant
to drive RELION/IMOD binaries. ``TOMOREFINE_NO_RELIONTOMO=1`` forces the plugin's own class even where
reliontomo is installed.

Item transform convention (checked against reliontomo's ``getTransformMatrixFromRow`` /
``getTransformInfoFromCoordOrSubtomo`` in the tests): a ``RelionPSubtomogram`` carries only the
*subtomogram* orientation ``A_sub`` (``rlnTomoSubtomogram{Rot,Tilt,Psi}``) and the origin
(``rlnOrigin*Angst``, divided by the set's sampling rate) in its transform, and the particle's own angles
(``rlnAngle{Rot,Tilt,Psi}``) as the attributes ``_rot``/``_tilt``/``_psi``. That split must be kept:
RELION built the pseudo-subtomogram volumes in the ``A_sub`` frame, and reliontomo's writer regenerates
particles.star from exactly these fields before every relion_refine call.
"""
from __future__ import annotations

import functools
import os

import numpy as np

#: reliontomo's sqlite template for these sets (``reliontomo.constants.PSUBTOMOS_SQLITE``, last definition).
RELIONTOMO_SQLITE_TEMPLATE = "pseudosubtomograms%s.sqlite"
#: reliontomo's placeholder for a missing CTF image (``reliontomo.constants.FILE_NOT_FOUND``).
FILE_NOT_FOUND = "FileNotFound"
RELIONTOMO_SET_CLASS = "RelionSetOfPseudoSubtomograms"


@functools.lru_cache(maxsize=1)
def reliontomo_classes():
    """``(RelionSetOfPseudoSubtomograms, RelionPSubtomogram)`` when reliontomo can be imported, else ``None``.

    Only ``reliontomo.objects`` is imported: it needs neither the RELION binaries nor the plugin's
    configuration (``reliontomo.protocols`` and ``reliontomo.convert`` do, and the latter also needs
    scipion-app).
    """
    if os.environ.get("TOMOREFINE_NO_RELIONTOMO", "").strip() not in ("", "0"):
        return None
    try:
        from reliontomo.objects import RelionPSubtomogram, RelionSetOfPseudoSubtomograms
    except Exception:  # not installed, or installed without its own dependencies
        return None
    return RelionSetOfPseudoSubtomograms, RelionPSubtomogram


def is_reliontomo_set(obj) -> bool:
    return obj is not None and obj.getClassName() == RELIONTOMO_SET_CLASS


def particle_angle_matrix(rot_deg, tilt_deg, psi_deg) -> np.ndarray:
    """RELION's ``A_part`` (3, 3) float64 from ``rlnAngle{Rot,Tilt,Psi}`` (``None`` reads as 0)."""
    from .compute.conventions import euler_zyz_to_matrix

    angles = [0.0 if v is None else float(v) for v in (rot_deg, tilt_deg, psi_deg)]
    return np.asarray(euler_zyz_to_matrix(*angles), dtype=np.float64).reshape(3, 3)


def full_orientation_matrix(item, set_pixel_size_angst, coord_pixel_size_angst) -> np.ndarray:
    """The plugin's particle-input matrix (TR_RELION, full orientation) of a ``RelionPSubtomogram``.

    The item holds ``A_sub`` and origin ``o`` (Å, in the ``A_sub`` frame) in its transform and
    ``A_part`` in its angle attributes. The plugin's converter reads one matrix, the full orientation
    ``A = A_sub·A_part``, with the origin in *that* frame, ``o' = A_partᵀ·o``, so the particle position
    ``centre − A_sub·o = centre − A·o'`` is unchanged. Returns a 4×4 float64 matrix to be read as
    ``convention=TR_RELION`` with translation in ``coord_pixel_size_angst`` pixels.
    """
    from tomo.constants import TR_RELION

    from .convert import scipion_matrix_from_relion

    m = np.asarray(item.getTransform(convention=TR_RELION).getMatrix(), dtype=np.float64)
    a_sub = np.linalg.inv(m[:3, :3])
    origin_angst = -m[:3, 3] * float(set_pixel_size_angst)
    a_part = particle_angle_matrix(item.getRot(), item.getTilt(), item.getPsi())
    return scipion_matrix_from_relion(a_sub @ a_part, a_part.T @ origin_angst, coord_pixel_size_angst)


def _row_value(row, label, default):
    value = row.get(label, default) if hasattr(row, "get") else default
    try:
        if value is None or (isinstance(value, float) and np.isnan(value)):
            return default
    except TypeError:
        pass
    return value


def new_relion_item(item_class, row, index, set_pixel_size_angst, coordinate=None):
    """One ``RelionPSubtomogram`` from a particles.star row, with the attributes and defaults reliontomo's
    RELION 5 reader (``convert50_tomo.Reader.starFile2PseudoSubtomograms``) gives it.

    ``row`` is a mapping label → value (a pandas row). The transform is ``A_sub``
    (``rlnTomoSubtomogram{Rot,Tilt,Psi}``) with ``rlnOrigin*Angst``. ``index`` is the row's 0-based position (reliontomo alternates the default random subset and
    manifold index with it); ``coordinate`` the particle's input Coordinate3D (reliontomo rebuilds one
    from the ``sci*`` columns; here the real one is attached). The Warp-export coordinates
    ``_coordX/Y/Z`` are the coordinate's bottom-left position times the set's sampling rate, as
    reliontomo's extract protocol computes them (``calculateWarpCoords=True``).
    """
    from pwem.objects import Transform
    from tomo.constants import BOTTOM_LEFT_CORNER, TR_RELION

    from .convert import scipion_matrix_from_relion

    g = functools.partial(_row_value, row)
    if coordinate is not None and coordinate.getVolume() is not None:
        warp = [coordinate.getX(BOTTOM_LEFT_CORNER), coordinate.getY(BOTTOM_LEFT_CORNER),
                coordinate.getZ(BOTTOM_LEFT_CORNER)]
        warp = [float(v) * float(set_pixel_size_angst) for v in warp]
    else:
        warp = [float(g(f"rlnCoordinate{a}", 0.0)) for a in "XYZ"]
    item = item_class(
        fileName=str(g("rlnImageName", "")),
        samplingRate=float(set_pixel_size_angst),
        tsId=str(row["rlnTomoName"]),
        x=float(g("rlnOriginXAngst", 0.0)),
        y=float(g("rlnOriginYAngst", 0.0)),
        z=float(g("rlnOriginZAngst", 0.0)),
        xInImg=float(g("rlnCenteredCoordinateXAngst", 0.0)),
        yInImg=float(g("rlnCenteredCoordinateYAngst", 0.0)),
        zInImg=float(g("rlnCenteredCoordinateZAngst", 0.0)),
        rdnSubset=int(g("rlnRandomSubset", index % 2 + 1)),
        relionParticleName=str(g("rlnTomoParticleName", "")),
        visibleFrames=str(g("rlnTomoVisibleFrames", 0)),
        ctfFile=str(g("rlnCtfImage", FILE_NOT_FOUND)),
        opticsGroupId=int(g("rlnOpticsGroup", 1)),
        manifoldIndex=int(g("rlnManifoldIndex", 1 if index % 2 else -1)),
        logLikeliCont=float(g("rlnLogLikeliContribution", -1)),
        maxValProbDist=float(g("rlnMaxValueProbDistribution", -1)),
        noSignifSamples=int(g("rlnNrOfSignificantSamples", -1)),
        rot=float(g("rlnAngleRot", 0.0)),
        tilt=float(g("rlnAngleTilt", 0.0)),
        psi=float(g("rlnAnglePsi", 0.0)),
        tiltPrior=float(g("rlnAngleTiltPrior", 0.0)),
        psiPrior=float(g("rlnAnglePsiPrior", 0.0)),
        groupId=int(g("rlnGroupNumber", -1)),
        normCorrection=float(g("rlnNormCorrection", -1)),
        coordX=warp[0], coordY=warp[1], coordZ=warp[2],
    )
    a_sub = particle_angle_matrix(g("rlnTomoSubtomogramRot", 0.0), g("rlnTomoSubtomogramTilt", 0.0),
                                  g("rlnTomoSubtomogramPsi", 0.0))
    origin_angst = [item.getX(), item.getY(), item.getZ()]
    item.setTransform(Transform(scipion_matrix_from_relion(a_sub, origin_angst, set_pixel_size_angst)),
                      convention=TR_RELION)
    item.setClassId(int(g("rlnClassNumber", 1)))
    if coordinate is not None:
        item.setCoordinate3D(coordinate)
        item.setTsId(str(row["rlnTomoName"]))
    return item


def new_relion_set(set_class, protocol_path, optimisation_set_star, coordinates, ts_pixel_size_angst, binning,
                   box_size_px, n_particles, are_2d_stacks, acquisition):
    """An empty ``RelionSetOfPseudoSubtomograms`` with the set-level fields reliontomo's
    ``createSetOfRelionPSubtomograms`` sets for its RELION 5 extraction.

    ``box_size_px`` is the written (cropped) box, as reliontomo stores it. ``_areRe5Particles`` is
    True whatever RELION version reliontomo is configured for: the files are RELION 5's, so a reliontomo
    set up for RELION 4 rightly refuses them in its validation. Setting ``filesMaster`` reads the
    optimisation set and copies particles.star's optics table into the acquisition
    (``opticsGroupInfo``), which reliontomo's writer needs.
    """
    out = set_class.create(protocol_path, template=RELIONTOMO_SQLITE_TEMPLATE)
    out.setTsSamplingRate(float(ts_pixel_size_angst))
    out.setRelionBinning(float(binning))
    out.setSamplingRate(out.getCurrentSamplingRate())
    out.setBoxSize(int(box_size_px))
    out.setNReParticles(int(n_particles))
    if coordinates is not None:
        out.setCoordinates3D(coordinates)
    out.setAre2dStacks(bool(are_2d_stacks))
    out.setAreRe5Particles(True)
    out.setAcquisition(acquisition.clone())
    out.filesMaster = optimisation_set_star
    return out
