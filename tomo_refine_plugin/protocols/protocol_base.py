"""Shared plumbing of the tomo-refine protocols: inputs → RELION STAR files in extra/, one engine call per
tomogram (``only_tomos``), one merge call (``merge_only``), outputs back to Scipion.

Steps are ``prepareStep`` → ``tomogramStep(tsId)`` × N (run in parallel with STEPS_PARALLEL) →
``mergeStep`` → ``createOutputStep``. A resumed run skips the finished tomogram steps; the engine's
per-tomogram parts under ``extra/temp/`` are what the merge reads, so nothing finished is redone.
"""
from __future__ import annotations

import os
import time

from pwem.protocols import EMProtocol
from pyworkflow.protocol import STEPS_PARALLEL
from pyworkflow.protocol import params
from pyworkflow.utils import Message
from tomo.protocols import ProtTomoBase

from .. import constants as C
from ..compute.errors import InputError

PIXEL_SIZE_RTOL = 1e-3


def cli_command(program, options) -> str:
    """``tomo-refine <program> ...`` with every option that differs from its default (RELION flag names)."""
    import dataclasses
    import shlex

    parts = ["tomo-refine", program]
    for f in dataclasses.fields(options):
        value = getattr(options, f.name)
        if value == f.default or f.name in ("only_tomos", "merge_only"):
            continue
        if isinstance(value, bool):
            parts.append(f"--{f.name}")
        else:
            parts += [f"--{f.name}", shlex.quote(str(value))]
    return " ".join(parts)


class ProtTomoRefineBase(EMProtocol, ProtTomoBase):
    """Base of the tomo-refine protocols (not shown in the GUI: it has no ``_label``)."""

    _label = None
    _CLI_PROGRAM = None  # "align" or "subtomo"
    stepsExecutionMode = STEPS_PARALLEL

    # ------------------------------------------------------------------ form
    def _defineInputParams(self, form, particles_help=""):
        form.addSection(label=Message.LABEL_INPUT)
        form.addParam("inputTiltSeries", params.PointerParam, pointerClass="SetOfTiltSeries", important=True,
                      label="Tilt series",
                      help="Tilt series with their 2D alignment (IMOD-style transforms). A series without "
                           "alignment is used with its nominal tilt axis and no shifts.")
        form.addParam("inputCtfTomoSeries", params.PointerParam, pointerClass="SetOfCTFTomoSeries", important=True,
                      label="CTF tomo series", help="Per-tilt defocus of every tilt series.")
        form.addParam("inputParticles", params.PointerParam, pointerClass="SetOfCoordinates3D, SetOfSubTomograms",
                      important=True, label="Particles (coordinates or subtomograms)",
                      help="3D coordinates or subtomograms; their positions and orientations are used. "
                           + particles_help)
        form.addParam("inputTomograms", params.PointerParam, pointerClass="SetOfTomograms", allowsNull=True,
                      label="Tomograms (opt)", expertLevel=params.LEVEL_ADVANCED,
                      help="The tomograms the particles were picked on. Empty: the coordinates' own tomograms. "
                           "Give them explicitly in scheduled workflows (the coordinates' link to their "
                           "tomograms is a direct pointer that scheduling can lose).")
        form.addParam("handedness", params.BooleanParam, default=True,
                      label="Does focus decrease with Z distance?",
                      help="Yes writes rlnTomoHand = -1 (RELION's default); No writes +1.")

    def _defineThreads(self, form):
        form.addParallelSection(threads=1, mpi=0, binThreads=2,
                                binThreadsHelp="Engine (numba) threads used for each tomogram.")

    # ------------------------------------------------------------------ inputs
    def _getCoordinates(self):
        """The SetOfCoordinates3D behind the particle input."""
        particles = self.inputParticles.get()
        if hasattr(particles, "iterCoordinates") and particles.getClassName().startswith("SetOfCoordinates"):
            return particles
        return particles.getCoordinates3D()

    def _getTomograms(self):
        if self.inputTomograms.get() is not None:
            return self.inputTomograms.get()
        coords = self._getCoordinates()
        return coords.getPrecedents() if coords is not None else None

    def _particleTsIds(self):
        particles = self.inputParticles.get()
        ids = set()
        for item in particles.iterItems():
            ts_id = item.getTomoId() if hasattr(item, "getTomoId") and item.getTomoId() else None
            if ts_id is None and hasattr(item, "getVolName"):
                ts_id = item.getVolName()
            if ts_id is None and hasattr(item, "getCoordinate3D") and item.getCoordinate3D() is not None:
                ts_id = item.getCoordinate3D().getTomoId()
            ids.add(ts_id)
        return ids

    def _tsIdsToProcess(self):
        ts_ids = set(self.inputTiltSeries.get().getTSIds())
        return sorted(ts_ids & self._particleTsIds())

    def _inputErrors(self):
        """Errors that make the inputs unusable (also checked inside the first step: launchProtocol skips
        validate())."""
        errors = []
        ts_set = self.inputTiltSeries.get()
        ctf_set = self.inputCtfTomoSeries.get()
        particles = self.inputParticles.get()
        if ts_set is None or ctf_set is None or particles is None:
            return ["the tilt series, the CTF tomo series and the particles are all required"]
        ts_ids = set(ts_set.getTSIds())
        ctf_ids = set(ctf_set.getTSIds())
        particle_ids = self._particleTsIds()
        foreign = sorted(str(t) for t in particle_ids - ts_ids)
        if foreign:
            errors.append(f"particles belong to tomograms {foreign} that have no tilt series in "
                          f"{ts_set.getNameId() if hasattr(ts_set, 'getNameId') else 'the input'} "
                          f"(tilt series: {sorted(ts_ids)}). Give particles picked on these tilt series.")
        no_ctf = sorted(particle_ids & ts_ids - ctf_ids)
        if no_ctf:
            errors.append(f"tilt series {no_ctf} have no CTF in the CTF tomo series (CTFs for: "
                          f"{sorted(ctf_ids)}). Estimate the CTF of these tilt series first.")
        if not (particle_ids & ts_ids):
            errors.append("no particle belongs to any of the input tilt series")
        tomos = self._getTomograms()
        if tomos is None:
            errors.append("the particles' tomograms are unknown; give them in 'Tomograms (opt)'")
        return errors

    def _checkInputsOrRaise(self):
        errors = self._inputErrors()
        if errors:
            raise InputError("; ".join(errors), field=self.getClassName(),
                             fix="fix the inputs listed above and run again")

    def _tiltSeriesInfos(self, ts_ids):
        from ..convert import TiltSeriesInfo

        hand = -1.0 if self.handedness.get() else 1.0
        tomos = self._getTomograms()
        tomo_by_id = {t.getTsId(): t.clone() for t in tomos.iterItems()} if tomos is not None else {}
        ctf_by_id = {c.getTsId(): c for c in self.inputCtfTomoSeries.get().iterItems()}
        infos = []
        for ts in self.inputTiltSeries.get().iterItems():
            ts_id = ts.getTsId()
            if ts_id not in ts_ids:
                continue
            if ts_id not in tomo_by_id:
                raise InputError(f"no tomogram for tilt series {ts_id}", field="inputTomograms",
                                 fix="give the tomograms the particles were picked on")
            infos.append(TiltSeriesInfo(ts, ctf_by_id[ts_id], tomo_by_id[ts_id], hand))
        return infos

    def _particleItems(self):
        """(coordinate, TR_RELION matrix, coordinate pixel size, tomogram, input object id) per particle."""
        from tomo.constants import TR_RELION

        particles = self.inputParticles.get()
        tomos = self._getTomograms()
        tomo_by_id = {t.getTsId(): t.clone() for t in tomos.iterItems()}
        coords = self._getCoordinates()
        coord_pix = float(coords.getSamplingRate()) if coords is not None else float(particles.getSamplingRate())
        if particles.getClassName().startswith("SetOfCoordinates"):
            particles.setPrecedents(tomos)
            for coord in particles.iterCoordinates():
                tomo = tomo_by_id.get(coord.getTomoId())
                coord.setVolume(tomo)
                yield coord.clone(), coord.getMatrix(convention=TR_RELION), coord_pix, tomo, coord.getObjId()
        else:
            from ..reliontomo_compat import full_orientation_matrix, is_reliontomo_set

            # reliontomo's items split the orientation (A_sub in the transform, rlnAngle* as attributes);
            # everything else carries the full orientation in its transform.
            split = is_reliontomo_set(particles)
            set_pix = float(particles.getSamplingRate())
            for sub in particles.iterItems():
                coord = sub.getCoordinate3D()
                tomo = tomo_by_id.get(coord.getTomoId() or sub.getVolName())
                coord.setVolume(tomo)
                if split:
                    matrix = full_orientation_matrix(sub, set_pix, coord_pix)
                else:
                    matrix = sub.getTransform(convention=TR_RELION).getMatrix()
                yield coord.clone(), matrix, coord_pix, tomo, sub.getObjId()

    def _coordinatesById(self):
        """{input object id: Coordinate3D clone} for the particle input (coordinates or subtomograms)."""
        particles = self.inputParticles.get()
        tomos = self._getTomograms()
        tomo_by_id = {t.getTsId(): t.clone() for t in tomos.iterItems()} if tomos is not None else {}

        def attached(coord, ts_id):
            # With their tomogram, so bottom-left positions can be asked for (a fresh step process has
            # no precedents set on the input coordinates).
            coord = coord.clone()
            tomo = tomo_by_id.get(coord.getTomoId() or ts_id)
            if tomo is not None:
                coord.setVolume(tomo)
            return coord

        if particles.getClassName().startswith("SetOfCoordinates"):
            return {c.getObjId(): attached(c, None) for c in particles.iterItems()}
        return {s.getObjId(): attached(s.getCoordinate3D(), s.getVolName()) for s in particles.iterItems()}

    def _writeInputStars(self):
        """Write extra/in_tomograms.star (+ in_tilt_series/) and extra/in_particles.star."""
        from ..convert import particle_rows, write_particles_star, write_tomograms_star

        ts_ids = self._tsIdsToProcess()
        infos = self._tiltSeriesInfos(ts_ids)
        write_tomograms_star(infos, self._getExtraPath(C.IN_TOMOGRAMS_STAR), C.IN_TILT_SERIES_DIR)
        pix = {i.ts_id: i.pixel_size_angst for i in infos}
        rows = particle_rows(
            (item for item in self._particleItems() if (item[0].getTomoId() or item[3].getTsId()) in pix), pix
        )
        write_particles_star(rows, infos, self._getExtraPath(C.IN_PARTICLES_STAR))
        return infos

    # ------------------------------------------------------------------ steps
    def _insertAllSteps(self):
        prep = self._insertFunctionStep(self.prepareStep, needsGPU=False)
        tomo_steps = [
            self._insertFunctionStep(self.tomogramStep, ts_id, prerequisites=[prep], needsGPU=False)
            for ts_id in self._tsIdsToProcess()
        ]
        merge = self._insertFunctionStep(self.mergeStep, prerequisites=tomo_steps or [prep], needsGPU=False)
        self._insertFunctionStep(self.createOutputStep, prerequisites=[merge], needsGPU=False)

    def prepareStep(self):
        self._checkInputsOrRaise()
        self._checkSpecificInputsOrRaise()
        self._writeInputStars()
        command = cli_command(self._CLI_PROGRAM, self.engineOptions())
        self.info("Equivalent command line (scale out with --only_tomos NAME per array task, then --merge_only; "
                  "'Continue' on this run then skips the finished tomograms):\n  " + command)

    def _checkSpecificInputsOrRaise(self):
        errors = self._specificErrors()
        if errors:
            raise InputError("; ".join(errors), field=self.getClassName(), fix="fix the inputs and run again")

    def _specificErrors(self):
        return []

    def _threads(self):
        try:
            n = int(self.getBinThreads() or 1)
        except Exception:  # a protocol saved before binThreads existed
            n = 1
        return max(1, n)

    def tomogramStep(self, ts_id):
        started = time.time()
        self._runEngine(only_tomos=(ts_id,), merge_only=False)
        self.info(f"tomogram {ts_id} done in {time.time() - started:.1f} s")

    def mergeStep(self):
        self._runEngine(only_tomos=None, merge_only=True)

    def _engineLog(self, message):
        self.info(str(message))

    # ------------------------------------------------------------------ info
    def _validate(self):
        return self._inputErrors() + self._specificErrors()

    def _citations(self):
        return ["Zivanov2022", "Burt2024"]

    def _outputDir(self):
        return os.path.abspath(self._getExtraPath())
