"""Make pseudo-subtomograms (the ``relion_tomo_subtomo`` algorithm) from Scipion tilt series and particles."""
from __future__ import annotations

import os
from enum import Enum

import pyworkflow
from pyworkflow.protocol import params

from .. import constants as C
from ..compute.errors import InputError
from ..objects import TomoRefinePseudoSubtomogram, TomoRefineSetOfPseudoSubtomograms
from ..reliontomo_compat import new_relion_item, new_relion_set, reliontomo_classes
from .protocol_base import ProtTomoRefineBase


def _output_set_class():
    """reliontomo's set where reliontomo is installed (its protocols accept only that exact class),
    else the plugin's look-alike."""
    classes = reliontomo_classes()
    return classes[0] if classes else TomoRefineSetOfPseudoSubtomograms


class ProtTomoRefinePseudoSubtomosOutputs(Enum):
    pseudoSubtomograms = _output_set_class()


class ProtTomoRefinePseudoSubtomos(ProtTomoRefineBase):
    """Pseudo-subtomograms: for every particle, its tilt-image windows CTF- and dose-weighted and inserted
    into a 3D Fourier box (or kept as a 2D stack), with the matching CTF² and multiplicity volumes; the
    input of RELION's subtomogram refinement. Same algorithm and files as ``relion_tomo_subtomo``."""

    _label = "make pseudo-subtomograms"
    _devStatus = pyworkflow.BETA
    _CLI_PROGRAM = "subtomo"
    _possibleOutputs = ProtTomoRefinePseudoSubtomosOutputs

    def _defineParams(self, form):
        self._defineInputParams(form)
        form.addParam("inputAlignment", params.PointerParam, pointerClass="TomoRefineOptimisationSet",
                      allowsNull=True, label="Refined geometry (opt)",
                      help="The optimisation set of a 'refine tilt series and particles' run. When given, its "
                           "tomograms.star, particles.star and trajectories are used instead of converting the "
                           "tilt series and particles above (which then only name the tomograms).")
        form.addSection(label="Reconstruct")
        form.addParam("boxSize", params.IntParam, default=128, important=True, label="Box size (px)",
                      validators=[params.GE(8)], help="--b: box size in unbinned tilt-series pixels.")
        form.addParam("croppedBoxSize", params.IntParam, default=-1, label="Cropped box size (px)",
                      help="--crop: size of the written box after binning (-1: box/binning).")
        form.addParam("binningFactor", params.FloatParam, default=1.0, label="Binning factor",
                      validators=[params.GE(1.0)], help="--bin: downsampling of the output.")
        form.addParam("write2dStacks", params.BooleanParam, default=False, label="Write output as 2D stacks?",
                      help="--stack2d: write per-particle 2D tilt stacks instead of 3D pseudo-subtomograms.")
        form.addParam("outputInFloat16", params.BooleanParam, default=False, label="Write output in float16?",
                      help="--float16: MRC mode 12, half the disk space.")
        form.addParam("minNoFrames", params.IntParam, default=1, label="Minimum no. frames",
                      validators=[params.GE(1)],
                      help="--min_frames: drop particles visible in fewer tilt images.")
        form.addParam("maxDose", params.FloatParam, default=-1.0, label="Maximum dose (e/Å²)",
                      help="--max_dose: ignore tilt images with a larger pre-exposure (-1: all).")
        form.addParam("applyConeWeight", params.BooleanParam, default=False, label="Apply cone weight?",
                      help="--cone_weight: down-weight a cone of missing information (see cone angle).")
        form.addParam("coneAngle", params.FloatParam, default=10.0, condition="applyConeWeight",
                      label="Cone angle (deg)", help="--cone_angle.")
        self._defineThreads(form)

    # ------------------------------------------------------------------ checks
    def _specificErrors(self):
        errors = []
        box = self.boxSize.get()
        crop = self.croppedBoxSize.get()
        binning = self.binningFactor.get()
        if box is None or box < 8:
            errors.append("the box size must be at least 8 px")
        elif crop is not None and crop > 0 and crop > box / binning:
            errors.append(f"the cropped box ({crop} px) is larger than box/binning ({box / binning:g} px)")
        return errors

    # ------------------------------------------------------------------ engine
    def _inputFiles(self):
        """(tomograms.star, particles.star, trajectories or None)."""
        if self.inputAlignment.get() is not None:
            oset = self.inputAlignment.get()
            return oset.getTomogramsStar(), oset.getParticles(), oset.getTrajectories()
        return self._getExtraPath(C.IN_TOMOGRAMS_STAR), self._getExtraPath(C.IN_PARTICLES_STAR), None

    def engineOptions(self, only_tomos=None, merge_only=False):
        """The :class:`SubtomoOptions` this run uses (also what the equivalent CLI call gets)."""
        from ..compute.subtomo.program import SubtomoOptions

        t, p, mot = self._inputFiles()
        crop = self.croppedBoxSize.get()
        return SubtomoOptions(
            o=self._outputDir(), b=int(self.boxSize.get()), t=os.path.abspath(t), p=os.path.abspath(p),
            mot=os.path.abspath(mot) if mot else None, crop=int(crop) if crop is not None else -1,
            bin=float(self.binningFactor.get()), stack2d=bool(self.write2dStacks.get()),
            float16=bool(self.outputInFloat16.get()), min_frames=int(self.minNoFrames.get()),
            max_dose=float(self.maxDose.get()), cone_weight=bool(self.applyConeWeight.get()),
            cone_angle=float(self.coneAngle.get()), j=self._threads(), only_do_unfinished=True,
            only_tomos=only_tomos, merge_only=merge_only,
        )

    def _runEngine(self, only_tomos=None, merge_only=False):
        from ..compute.subtomo.program import run_subtomo

        return run_subtomo(self.engineOptions(only_tomos, merge_only), log=self._engineLog)

    # ------------------------------------------------------------------ outputs
    def createOutputStep(self):
        from ..compute.io.particles import read_particle_set

        opt_star = self._getExtraPath(C.OUT_OPTIMISATION_SET_STAR)
        part_star = self._getExtraPath(C.OUT_PARTICLES_STAR)
        if not os.path.exists(part_star):
            raise InputError("the engine wrote no particles.star", path=part_star,
                             fix="see the run log for the engine's error")
        pset = read_particle_set(part_star)
        ts_set = self.inputTiltSeries.get()
        ts_pix = float(ts_set.getSamplingRate())
        binning = float(self.binningFactor.get())
        box = int(self.boxSize.get())
        crop = self.croppedBoxSize.get()
        out_box = int(crop) if crop is not None and crop > 0 else int(round(box / binning))

        coords = self._getCoordinates()
        coord_by_obj = self._coordinatesById() if "sciObjId" in pset.particles else {}
        relion = reliontomo_classes()
        if relion is not None:
            out = self._relionOutput(relion, pset, opt_star, coords, coord_by_obj, ts_set, ts_pix, binning, out_box)
        else:
            out = self._ownOutput(pset, opt_star, coords, coord_by_obj, ts_set, ts_pix, binning, box, out_box)
        self._defineOutputs(**{ProtTomoRefinePseudoSubtomosOutputs.pseudoSubtomograms.name: out})
        self._defineSourceRelation(self.inputParticles, out)
        self._defineSourceRelation(self.inputTiltSeries, out)
        self._defineSourceRelation(self.inputCtfTomoSeries, out)

    def _relionOutput(self, classes, pset, opt_star, coords, coord_by_obj, ts_set, ts_pix, binning, out_box):
        """A reliontomo ``RelionSetOfPseudoSubtomograms`` (see :mod:`..reliontomo_compat`): item transforms
        hold ``A_sub`` and the origin only, the particle angles go to the items' angle attributes."""
        set_class, item_class = classes
        rows = pset.particles
        out = new_relion_set(set_class, self._getPath(), opt_star, coords, ts_pix, binning, out_box, len(rows),
                             bool(self.write2dStacks.get()), ts_set.getAcquisition())
        set_pix = out.getSamplingRate()
        for k, (_, row) in enumerate(rows.iterrows()):
            coord = coord_by_obj.get(int(row["sciObjId"])) if coord_by_obj else None
            out.append(new_relion_item(item_class, row, k, set_pix, coord))
        return out

    def _ownOutput(self, pset, opt_star, coords, coord_by_obj, ts_set, ts_pix, binning, box, out_box):
        out = TomoRefineSetOfPseudoSubtomograms.create(self._getPath())
        out.setAcquisition(ts_set.getAcquisition().clone())
        out.setTsSamplingRate(ts_pix)
        out.setRelionBinning(binning)
        out.setSamplingRate(ts_pix * binning)
        out.setBoxSize(box)
        out.setCroppedBoxSize(out_box)
        out.setAre2dStacks(bool(self.write2dStacks.get()))
        out.setFloat16(bool(self.outputInFloat16.get()))
        out.setFilesMaster(opt_star)
        if coords is not None:
            out.setCoordinates3D(coords)
        rows = pset.particles
        # The item transform is the particle's full orientation A_sub·A_part (and origin), as the
        # converter reads a Coordinate3D/SubTomogram matrix, so this set can be the particle input of
        # another run and give back the same particles.star rows.
        from pwem.objects import Transform
        from tomo.constants import TR_RELION

        from ..convert import scipion_matrix_from_relion

        matrices = pset.particle_matrices(rows)
        origins = pset.origins_angst(rows)
        coord_pix = float(coords.getSamplingRate()) if coords is not None else ts_pix
        for k, (_, row) in enumerate(rows.iterrows()):
            item = TomoRefinePseudoSubtomogram()
            item.setFileName(str(row.get("rlnImageName", "")))
            item.setSamplingRate(ts_pix * binning)
            item.setTsId(str(row["rlnTomoName"]))
            item.setRelionParticleName(str(row.get("rlnTomoParticleName", "")))
            item.setCentredAngst(*(float(row.get(f"rlnCenteredCoordinate{a}Angst", 0.0)) for a in "XYZ"))
            if "rlnRandomSubset" in row:
                item.setRdnSubset(int(row["rlnRandomSubset"]))
            if "rlnOpticsGroup" in row:
                item.setOpticsGroupId(int(row["rlnOpticsGroup"]))
            if "rlnTomoVisibleFrames" in row:
                item.setVisibleFrames(str(row["rlnTomoVisibleFrames"]))
            if "rlnCtfImage" in row:
                item.setCtfFile(str(row["rlnCtfImage"]))
            item.setTransform(Transform(scipion_matrix_from_relion(matrices[k], origins[k], coord_pix)),
                              convention=TR_RELION)
            coord = coord_by_obj.get(int(row["sciObjId"])) if coord_by_obj else None
            if coord is not None:
                item.setCoordinate3D(coord)
                item.setVolName(str(row["rlnTomoName"]))
            out.append(item)
        out.setNReParticles(len(rows))
        return out

    # ------------------------------------------------------------------ info
    def _summary(self):
        lines = []
        out = getattr(self, ProtTomoRefinePseudoSubtomosOutputs.pseudoSubtomograms.name, None)
        if out is not None:
            kind = "2D stacks" if out.are2dStacks() else "3D pseudo-subtomograms"
            # reliontomo's set stores the written (cropped) box as its box size and has no getter for
            # the optimisation set path other than the ``filesMaster`` property.
            written = out.getCroppedBoxSize() if hasattr(out, "getCroppedBoxSize") else out.getBoxSize()
            lines.append(f"{out.getSize()} {kind}, box {written} px at "
                         f"{out.getCurrentSamplingRate():.3f} Å/px (binning {out.getRelionBinning():g}).")
            lines.append(f"RELION files: {out.filesMaster}")
            if out.getClassName() == "RelionSetOfPseudoSubtomograms":
                lines.append("Output class: reliontomo's RelionSetOfPseudoSubtomograms (input of its refine, "
                             "classify, reconstruct, polishing and CTF refinement protocols).")
        elif self.isFinished():
            lines.append("No output.")
        return lines

    def _methods(self):
        binning = self.binningFactor.get()
        return [
            f"Pseudo-subtomograms were computed from the tilt series with the algorithm of RELION 5's "
            f"relion_tomo_subtomo [Zivanov2022; Burt2024] (tomo-refine), box {self.boxSize.get()} px, "
            f"binning {binning:g}" + (", as 2D stacks" if self.write2dStacks.get() else "") + "."
        ]
