"""Refine tilt series and particles (the ``relion_tomo_align`` algorithm) from Scipion objects."""
from __future__ import annotations

import os
from enum import Enum

import numpy as np
import pyworkflow
from pwem.objects import Transform
from pyworkflow.object import Float
from pyworkflow.protocol import params
from tomo.objects import SetOfCoordinates3D, SetOfTiltSeries, TiltImage, TiltSeries

from .. import constants as C
from ..compute.errors import InputError
from ..objects import TomoRefineAlignReport, TomoRefineOptimisationSet
from .protocol_base import PIXEL_SIZE_RTOL, ProtTomoRefineBase


class ProtTomoRefineAlignOutputs(Enum):
    refinedTiltSeries = SetOfTiltSeries
    refinedCoordinates = SetOfCoordinates3D
    optimisationSet = TomoRefineOptimisationSet
    alignReport = TomoRefineAlignReport


class ProtTomoRefineAlign(ProtTomoRefineBase):
    """Refines every tilt image's orientation and shift, and every particle's 3D position, against a
    reference map (Bayesian polishing of tilt series, the algorithm of RELION 5's relion_tomo_align).
    Outputs the refined tilt series, refined coordinates, the RELION optimisation set and a per-tilt
    report."""

    _label = "refine tilt series and particles"
    _devStatus = pyworkflow.BETA
    _CLI_PROGRAM = "align"
    _possibleOutputs = ProtTomoRefineAlignOutputs

    def _defineParams(self, form):
        self._defineInputParams(form)
        form.addParam("inputReference", params.PointerParam, pointerClass="AverageSubTomogram, Volume",
                      important=True, label="Reference (with half maps)",
                      help="An average with two half maps, or a first half map (then give the second below).")
        form.addParam("inputReference2", params.PointerParam, pointerClass="Volume", allowsNull=True,
                      label="Second half map (opt)",
                      help="Only when the reference above is a plain volume: the other half map.")
        form.addParam("inputMask", params.PointerParam, pointerClass="VolumeMask", allowsNull=True,
                      label="Reference mask (opt)")
        form.addParam("inputFscStar", params.PathParam, allowsNull=True, default="",
                      label="Post-process FSC STAR (opt)",
                      help="RELION postprocess.star; without it the FSC of the half maps is used.")

        form.addSection(label="Polish")
        form.addParam("boxSize", params.IntParam, default=128, label="Box size for estimation (px)",
                      validators=[params.GE(16)],
                      help="--b: at least the reference's box; a smaller reference is zero-padded to it.")
        form.addParam("maxPosErr", params.IntParam, default=5, label="Max position error (px)",
                      validators=[params.GE(0), params.LE(64)], help="--r: largest shift searched.")
        # The engine's --shift_only writes no refined particles, which this protocol's outputs need: the
        # parameter stays hidden and a workflow that sets it is refused (_specificErrors); use the CLI.
        form.addParam("alignByShift", params.BooleanParam, default=False, condition="False",
                      label="Align by shift only? (CLI only)", help="--shift_only")
        form.addParam("alignmentModel", params.EnumParam, choices=["tiltImages", "onlyParticles"], default=0,
                      condition="False", display=params.EnumParam.DISPLAY_HLIST, label="Alignment model",
                      help="onlyParticles: --shift_only_by_particles.")
        form.addParam("maxIterations", params.IntParam, default=10000, label="Max iterations",
                      expertLevel=params.LEVEL_ADVANCED, validators=[params.GE(1)], help="--it")

        # RELION's motion and deformation models. The engine refuses them ("not yet available"), so the
        # section is hidden; a workflow that sets them still reaches the engine and fails loudly.
        form.addSection(label="Motion & deformations")
        form.addParam("fitPerParticleMotion", params.BooleanParam, default=False, condition="False",
                      label="Fit per particle motion? (not yet available)", help="--motion")
        form.addParam("sigmaVel", params.FloatParam, default=0.2, condition="False",
                      label="Sigma for velocity (Å/dose)", help="--s_vel")
        form.addParam("sigmaDiv", params.FloatParam, default=5000.0, condition="False",
                      label="Sigma for divergence (Å)", help="--s_div")
        form.addParam("doGaussianDecay", params.BooleanParam, default=False, condition="False",
                      label="Use Gaussian decay?", help="--sq_exp_ker")
        form.addParam("estimate2dDeformations", params.BooleanParam, default=False, condition="False",
                      label="Estimate 2D deformations? (not yet available)", help="--deformation")
        self._defineThreads(form)

    # ------------------------------------------------------------------ checks
    def _halfMaps(self):
        ref = self.inputReference.get()
        if ref is None:
            return None, None
        if hasattr(ref, "hasHalfMaps") and ref.hasHalfMaps():
            halves = ref.getHalfMaps(asList=True) if "asList" in ref.getHalfMaps.__code__.co_varnames \
                else ref.getHalfMaps().split(",")
            halves = [str(h) for h in halves]
            return (halves[0], halves[1]) if len(halves) >= 2 else (halves[0], None)
        second = self.inputReference2.get()
        return ref.getFileName(), (second.getFileName() if second is not None else None)

    def _specificErrors(self):
        errors = []
        ref = self.inputReference.get()
        ts_set = self.inputTiltSeries.get()
        if ref is None:
            return ["a reference with two half maps is required"]
        h1, h2 = self._halfMaps()
        if not h2:
            errors.append("the reference has no half maps: give an average with half maps, or a second half map")
        if ts_set is not None:
            ts_pix = float(ts_set.getSamplingRate())
            ref_pix = float(ref.getSamplingRate())
            if abs(ref_pix - ts_pix) > PIXEL_SIZE_RTOL * ts_pix:
                errors.append(f"the reference has {ref_pix:g} Å/px but the tilt series {ts_pix:g} Å/px; "
                              "resample (or reconstruct) the reference at the tilt-series pixel size")
            second = self.inputReference2.get()
            if second is not None and abs(float(second.getSamplingRate()) - ts_pix) > PIXEL_SIZE_RTOL * ts_pix:
                errors.append(f"the second half map has {float(second.getSamplingRate()):g} Å/px, "
                              f"not the tilt series' {ts_pix:g} Å/px")
        if self.alignByShift.get():
            errors.append("shift-only alignment is not offered by this protocol (it refines no particles); "
                          "run `tomo-refine align --shift_only` on the exported STAR files instead")
        box = self.boxSize.get()
        if ref is not None and box is not None:
            dims = ref.getDim()
            # The engine zero-pads the reference to the estimation box (--b), never crops it.
            if dims is not None and dims[0] > box:
                errors.append(f"the reference box is {dims[0]} px, larger than the estimation box of {box} px; "
                              f"set 'Box size for estimation' to {dims[0]} px or more")
        return errors

    # ------------------------------------------------------------------ engine
    def engineOptions(self, only_tomos=None, merge_only=False):
        """The :class:`AlignOptions` this run uses (also what the equivalent CLI call gets)."""
        from ..compute.align.program import AlignOptions

        h1, h2 = self._halfMaps()
        mask = self.inputMask.get()
        fsc = self.inputFscStar.get()
        shift_only = bool(self.alignByShift.get())
        return AlignOptions(
            o=self._outputDir(), b=int(self.boxSize.get()),
            t=os.path.abspath(self._getExtraPath(C.IN_TOMOGRAMS_STAR)),
            p=os.path.abspath(self._getExtraPath(C.IN_PARTICLES_STAR)),
            ref1=os.path.abspath(h1), ref2=os.path.abspath(h2),
            mask=os.path.abspath(mask.getFileName()) if mask is not None else None,
            fsc=os.path.abspath(fsc) if fsc else None,
            r=int(self.maxPosErr.get()), it=int(self.maxIterations.get()),
            shift_only=shift_only, shift_only_by_particles=shift_only and self.alignmentModel.get() == 1,
            motion=bool(self.fitPerParticleMotion.get()), s_vel=float(self.sigmaVel.get()),
            s_div=float(self.sigmaDiv.get()), sq_exp_ker=bool(self.doGaussianDecay.get()),
            deformation=bool(self.estimate2dDeformations.get()),
            j=self._threads(), only_do_unfinished=True, only_tomos=only_tomos, merge_only=merge_only,
        )

    def _runEngine(self, only_tomos=None, merge_only=False):
        from ..compute.align.program import run_align

        return run_align(self.engineOptions(only_tomos, merge_only), log=self._engineLog)

    # ------------------------------------------------------------------ outputs
    def createOutputStep(self):
        from ..compute.io.particles import read_particle_set
        from ..compute.io.tomograms import read_tomogram_set
        from ..convert import refined_positions, refined_transforms

        tomo_star = self._getExtraPath(C.OUT_TOMOGRAMS_STAR)
        part_star = self._getExtraPath(C.OUT_PARTICLES_STAR)
        opt_star = self._getExtraPath(C.OUT_OPTIMISATION_SET_STAR)
        for f in (tomo_star, part_star, opt_star):
            if not os.path.exists(f):
                raise InputError("the engine did not write this file", path=f, fix="see the run log")
        tset = read_tomogram_set(tomo_star)
        refined_names = set(tset.names())

        # Tilt series: new transforms (and tilt angles, XTilt as an extra attribute) for refined series.
        in_ts = self.inputTiltSeries.get()
        out_ts = self._createSetOfTiltSeries(suffix="_refined")
        out_ts.copyInfo(in_ts)
        for ts in in_ts.iterItems():
            ts_id = ts.getTsId()
            new = TiltSeries()
            new.copyInfo(ts, copyId=True)
            out_ts.append(new)
            table = tset.tilt_table(ts_id) if ts_id in refined_names else None
            by_index = {}
            if table is not None:
                dims = ts.getDim()
                transforms, y_tilt, x_tilt = refined_transforms(table, float(ts.getSamplingRate()), dims[:2])
                for k, name in enumerate(table["rlnMicrographName"]):
                    by_index[int(str(name).split("@", 1)[0])] = (transforms[k], y_tilt[k], x_tilt[k])
            for ti in ts.iterItems(orderBy="_index"):
                new_ti = TiltImage()
                new_ti.copyInfo(ti, copyId=True)
                new_ti.setLocation(ti.getLocation())
                if ti.getIndex() in by_index:
                    m, y, x = by_index[ti.getIndex()]
                    new_ti.setTransform(Transform(np.asarray(m)))
                    new_ti.setTiltAngle(float(y))
                    setattr(new_ti, C.ATTR_X_TILT, Float(float(x)))
                elif ti.getTransform() is not None:
                    new_ti.setTransform(ti.getTransform().clone())
                new.append(new_ti)
            new.setAnglesCount(len(new))
            new.write()
            out_ts.update(new)
        out_ts.write()

        # Coordinates: positions with RELION's refined offsets baked in.
        pset = read_particle_set(part_star)
        tomos = self._getTomograms()
        tomo_by_id = {t.getTsId(): t.clone() for t in tomos.iterItems()}
        coords = self._getCoordinates()
        out_coords = self._createSetOfCoordinates3D(tomos, suffix="_refined")
        out_coords.copyInfo(coords)
        out_coords.setPrecedents(tomos)
        rows = pset.particles
        by_obj = {}
        if "sciObjId" in rows:
            for i, obj_id in enumerate(rows["sciObjId"].to_numpy()):
                by_obj[int(obj_id)] = i
        coord_pix = float(coords.getSamplingRate())
        positions_by_tomo = {}
        for ts_id in rows["rlnTomoName"].unique():
            sel = rows[rows["rlnTomoName"] == ts_id]
            tomo = tomo_by_id[str(ts_id)]
            positions_by_tomo[str(ts_id)] = dict(
                zip(sel.index, refined_positions(sel, coord_pix, tomo.getDim(), tomo.getShiftsFromOrigin()))
            )
        from tomo.constants import SCIPION

        for obj_id, coord in self._coordinatesById().items():
            i = by_obj.get(obj_id)
            if i is None:
                continue
            label = rows.index[i]
            pos = positions_by_tomo[str(rows.loc[label, "rlnTomoName"])][label]
            new = coord.clone()
            ts_id = str(rows.loc[label, "rlnTomoName"])
            new.setVolume(tomo_by_id[ts_id])
            new.setTomoId(ts_id)
            new.setPosition(float(pos[0]), float(pos[1]), float(pos[2]), SCIPION)
            setattr(new, C.ATTR_PARTICLE_NAME, pyworkflow.object.String(str(rows.loc[label, "rlnTomoParticleName"])))
            out_coords.append(new)

        oset = TomoRefineOptimisationSet(filesMaster=opt_star)
        report = TomoRefineAlignReport(reportDir=self._getExtraPath("report"), nTomograms=len(refined_names))
        outputs = ProtTomoRefineAlignOutputs
        self._defineOutputs(**{outputs.refinedTiltSeries.name: out_ts, outputs.refinedCoordinates.name: out_coords,
                               outputs.optimisationSet.name: oset, outputs.alignReport.name: report})
        for out in (out_ts, out_coords, oset, report):
            self._defineSourceRelation(self.inputTiltSeries, out)
            self._defineSourceRelation(self.inputParticles, out)

    # ------------------------------------------------------------------ info
    def _warnings(self):
        if not self.inputFscStar.get():
            return ["No post-process FSC given: the half-map FSC is used to weight the frequencies."]
        return []

    def _summary(self):
        lines = []
        report = getattr(self, ProtTomoRefineAlignOutputs.alignReport.name, None)
        if report is None:
            return ["No output."] if self.isFinished() else []
        lines.append(f"Refined {report.getNTomograms()} tilt series; report in {report.getReportDir()}.")
        path = os.path.join(report.getReportDir() or "", "align_report.star")
        if os.path.exists(path):
            from ..compute.io.star import read_star

            for name, table in read_star(path).items():
                if not hasattr(table, "columns") or "tomoRefineCcAfter" not in table:
                    continue
                before = table["tomoRefineCcBefore"].to_numpy(float) if "tomoRefineCcBefore" in table else None
                after = table["tomoRefineCcAfter"].to_numpy(float)
                move = table["tomoRefineMeanMovePx"].to_numpy(float) if "tomoRefineMeanMovePx" in table else None
                text = f"{name}: Σ CC {np.nansum(after):.4g}"
                if before is not None and not np.all(np.isnan(before)):
                    text = f"{name}: Σ CC {np.nansum(before):.4g} → {np.nansum(after):.4g}"
                if move is not None:
                    text += f", mean 2D move {np.nanmean(move):.2f} px (max tilt {np.nanmax(move):.2f})"
                lines.append(text)
        return lines

    def _methods(self):
        mode = "shifts only" if self.alignByShift.get() else "tilt-image orientations, shifts and particle positions"
        return [
            "Tilt series were refined against the reference (%s, box %s px, max. position error %s px) with "
            "the algorithm of RELION 5's relion_tomo_align [Zivanov2022; Zivanov2019; Burt2024] (tomo-refine)."
            % (mode, self.boxSize.get(), self.maxPosErr.get())
        ]

    def _citations(self):
        return ["Zivanov2022", "Zivanov2019", "Burt2024"]
