"""Test fixture: give imported tilt series an IMOD alignment and a CTF without external plugins.

scipion-em-tomo imports tilt series without their ``.xf`` alignment, and importing CTFs needs the
imod/cistem/gctf plugins. The plugin's own tests (and its workflow template) build their inputs with
this protocol. It is hidden from the GUI (``isDisabled``): it must live in ``protocols/`` because the
protocol run process finds protocols only through the plugin domain.
"""
from __future__ import annotations

import os
from enum import Enum

import numpy as np
import pyworkflow
from pwem.objects import Transform
from pwem.protocols import EMProtocol
from pyworkflow.protocol import params
from tomo.objects import (
    CTFTomo,
    CTFTomoSeries,
    SetOfCoordinates3D,
    SetOfCTFTomoSeries,
    SetOfTiltSeries,
    TiltImage,
    TiltSeries,
)
from tomo.protocols import ProtTomoBase

from ..compute.errors import InputError


class ProtTomoRefineTestFixtureOutputs(Enum):
    outputTiltSeries = SetOfTiltSeries
    outputSetOfCTFTomoSeries = SetOfCTFTomoSeries
    outputCoordinates = SetOfCoordinates3D


def read_xf(path):
    """IMOD ``.xf`` file → ``(n, 3, 3)`` float64 (``A11 A12 A21 A22 DX DY`` per line)."""
    values = np.loadtxt(path, ndmin=2)
    if values.shape[1] != 6:
        raise InputError(f"expected 6 columns per line, got {values.shape[1]}", path=path,
                         fix="give an IMOD .xf file: A11 A12 A21 A22 DX DY")
    m = np.zeros((values.shape[0], 3, 3))
    m[:, 0, 0], m[:, 0, 1], m[:, 1, 0], m[:, 1, 1] = values[:, 0], values[:, 1], values[:, 2], values[:, 3]
    m[:, 0, 2], m[:, 1, 2], m[:, 2, 2] = values[:, 4], values[:, 5], 1.0
    return m


class ProtTomoRefineTestFixture(EMProtocol, ProtTomoBase):
    """Assigns ``<tsId>.xf`` transforms from a folder (optional) and a CTF per tilt: constant defocus, or
    ``<tsId>.defocus`` files in the same folder (``U V angle`` in Å/deg, one line per tilt image in stack
    order). Optionally gives coordinates the orientations of a RELION particles STAR file (rows of each
    tomogram in coordinate order)."""

    _label = "test fixture: alignment and CTF"
    _devStatus = pyworkflow.BETA
    _possibleOutputs = ProtTomoRefineTestFixtureOutputs

    @classmethod
    def isDisabled(cls):
        return True

    def _defineParams(self, form):
        form.addSection(label="Input")
        form.addParam("inputTiltSeries", params.PointerParam, pointerClass="SetOfTiltSeries", label="Tilt series")
        form.addParam("filesPath", params.PathParam, default="", label="Folder with <tsId>.xf / <tsId>.defocus")
        form.addParam("defocusU", params.FloatParam, default=30000.0, label="Defocus U (Å)")
        form.addParam("defocusV", params.FloatParam, default=30000.0, label="Defocus V (Å)")
        form.addParam("defocusAngle", params.FloatParam, default=0.0, label="Defocus angle (deg)")
        form.addParam("inputCoordinates", params.PointerParam, pointerClass="SetOfCoordinates3D", allowsNull=True,
                      label="Coordinates (opt)")
        form.addParam("orientationsStar", params.PathParam, default="", label="Particles STAR with angles (opt)")

    def _insertAllSteps(self):
        self._insertFunctionStep(self.createOutputStep, needsGPU=False)

    def _file(self, ts_id, ext):
        folder = self.filesPath.get() or ""
        path = os.path.join(folder, f"{ts_id}.{ext}")
        return path if folder and os.path.exists(path) else None

    def createOutputStep(self):
        in_ts = self.inputTiltSeries.get()
        has_xf = any(self._file(ts.getTsId(), "xf") for ts in in_ts.iterItems())
        out_ts = None
        if has_xf:
            out_ts = self._createSetOfTiltSeries()
            out_ts.copyInfo(in_ts)
            for ts in in_ts.iterItems():
                xf_path = self._file(ts.getTsId(), "xf")
                xf = read_xf(xf_path) if xf_path else None
                new = TiltSeries()
                new.copyInfo(ts, copyId=True)
                out_ts.append(new)
                for k, ti in enumerate(ts.iterItems(orderBy="_index")):
                    new_ti = TiltImage()
                    new_ti.copyInfo(ti, copyId=True)
                    new_ti.setLocation(ti.getLocation())
                    if xf is not None:
                        if k >= len(xf):
                            raise InputError(f"{len(xf)} lines but tilt image {k + 1} exists", path=xf_path)
                        new_ti.setTransform(Transform(xf[k]))
                    new.append(new_ti)
                new.setAnglesCount(len(new))
                new.write()
                out_ts.update(new)
            out_ts.write()
            self._defineOutputs(**{ProtTomoRefineTestFixtureOutputs.outputTiltSeries.name: out_ts})
            self._defineSourceRelation(self.inputTiltSeries, out_ts)

        ctf_set = SetOfCTFTomoSeries.create(self._getPath(), template="CTFmodels%s.sqlite")
        source = out_ts if out_ts is not None else in_ts
        ctf_set.setSetOfTiltSeries(source)
        for ts in source.iterItems():
            series = CTFTomoSeries()
            series.copyInfo(ts)
            series.setTiltSeries(ts)
            series.setTsId(ts.getTsId())
            ctf_set.append(series)
            defocus_path = self._file(ts.getTsId(), "defocus")
            table = np.loadtxt(defocus_path, ndmin=2) if defocus_path else None
            for k, ti in enumerate(ts.iterItems(orderBy="_index")):
                ctf = CTFTomo()
                ctf.setIndex(ti.getIndex())
                ctf.setAcquisitionOrder(ti.getAcquisitionOrder())
                if table is not None:
                    u, v, angle = table[k, :3]
                else:
                    u, v, angle = self.defocusU.get(), self.defocusV.get(), self.defocusAngle.get()
                ctf.setStandardDefocus(float(u), float(v), float(angle))
                series.append(ctf)
            ctf_set.update(series)
        ctf_set.write()
        self._defineOutputs(**{ProtTomoRefineTestFixtureOutputs.outputSetOfCTFTomoSeries.name: ctf_set})
        self._defineSourceRelation(self.inputTiltSeries, ctf_set)

        if self.inputCoordinates.get() is not None and self.orientationsStar.get():
            self._orientCoordinates()

    def _orientCoordinates(self):
        from tomo.constants import TR_RELION

        from ..compute.io.particles import read_particle_set
        from ..convert import scipion_matrix_from_relion

        pset = read_particle_set(self.orientationsStar.get())
        coords = self.inputCoordinates.get()
        out = self._createSetOfCoordinates3D(coords.getPrecedents())
        out.copyInfo(coords)
        counters = {}
        for coord in coords.iterCoordinates():
            ts_id = coord.getTomoId()
            rows = pset.for_tomogram(ts_id)
            k = counters.get(ts_id, 0)
            if k >= len(rows):
                raise InputError(f"tomogram {ts_id} has more coordinates than STAR rows ({len(rows)})",
                                 path=self.orientationsStar.get())
            counters[ts_id] = k + 1
            a = pset.particle_matrices(rows.iloc[[k]])[0]
            new = coord.clone()
            new.setMatrix(scipion_matrix_from_relion(a), convention=TR_RELION)
            out.append(new)
        self._defineOutputs(**{ProtTomoRefineTestFixtureOutputs.outputCoordinates.name: out})
        self._defineSourceRelation(self.inputCoordinates, out)

    def _summary(self):
        return ["Test fixture: IMOD .xf alignment and CTF assigned without external plugins."]
