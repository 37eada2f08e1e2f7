"""Scipion data classes of tomo-refine.

They keep *paths* to RELION 5 files rather than copying their content, the way scipion-em-reliontomo's
``RelionSetOfPseudoSubtomograms`` does: the STAR files in a run's extra/ folder are the truth, the
sqlite rows are the index the GUI browses. Attribute and getter names follow reliontomo's
(``_filesMaster``, ``_tomograms``, ``_particles``, ``_trajectories``, ``getParticles()``,
``getTomogramsStar()``, ``getCurrentSamplingRate()``, ...) so code written for those sets reads these.

The class names are stored in every project's sqlite: never rename them.
"""
from __future__ import annotations

import os

import pwem.objects as emobj
from pyworkflow.object import Boolean, Float, Integer, String
from tomo.objects import SetOfSubTomograms, SubTomogram

__all__ = [
    "TomoRefineOptimisationSet",
    "TomoRefineAlignReport",
    "TomoRefinePseudoSubtomogram",
    "TomoRefineSetOfPseudoSubtomograms",
]


def _read_optimisation_set(path):
    """{label: value} of a RELION optimisation set (one unnamed list table), relative paths kept."""
    import starfile

    blocks = starfile.read(path, always_dict=True)
    table = next(iter(blocks.values()))
    if hasattr(table, "iloc"):
        table = table.iloc[0].to_dict()
    return {str(k): (None if v is None else str(v)) for k, v in dict(table).items()}


class TomoRefineOptimisationSet(emobj.EMObject):
    """A RELION optimisation set: ``optimisation_set.star`` and the files it names.

    Paths are as written in the file (relative to the project folder when the plugin wrote it).
    """

    _LABELS = {
        "_particles": "rlnTomoParticlesFile",
        "_tomograms": "rlnTomoTomogramsFile",
        "_trajectories": "rlnTomoTrajectoriesFile",
        "_manifolds": "rlnTomoManifoldsFile",
        "_referenceMap1": "rlnTomoReferenceMap1File",
        "_referenceMap2": "rlnTomoReferenceMap2File",
        "_referenceMask": "rlnTomoReferenceMaskFile",
        "_referenceFsc": "rlnTomoReferenceFscFile",
    }

    def __init__(self, filesMaster=None, **kwargs):
        super().__init__(**kwargs)
        self._filesMaster = String()
        for attr in self._LABELS:
            setattr(self, attr, String())
        if filesMaster:
            self.setFilesMaster(filesMaster)

    def setFilesMaster(self, path):
        """Point at ``optimisation_set.star`` and record the paths it lists."""
        values = _read_optimisation_set(path)
        self._filesMaster.set(str(path))
        for attr, label in self._LABELS.items():
            getattr(self, attr).set(values.get(label))

    def getFilesMaster(self):
        return self._filesMaster.get()

    def getParticles(self):
        return self._particles.get()

    def getTomogramsStar(self):
        return self._tomograms.get()

    def getTrajectories(self):
        return self._trajectories.get()

    def getManifolds(self):
        return self._manifolds.get()

    def getReferenceFsc(self):
        return self._referenceFsc.get()

    def __str__(self):
        return f"{self.getClassName()} ({self.getFilesMaster()})"


class TomoRefineAlignReport(emobj.EMObject):
    """The per-tilt report of a tilt-series refinement: a folder of report files from the align engine
    (``per_tilt.star`` / ``per_tilt.csv`` with CC before/after and parameter changes) and the number
    of tomograms refined."""

    def __init__(self, reportDir=None, nTomograms=None, **kwargs):
        super().__init__(**kwargs)
        self._reportDir = String(reportDir)
        self._nTomograms = Integer(nTomograms)

    def getReportDir(self):
        return self._reportDir.get()

    def setReportDir(self, path):
        self._reportDir.set(path)

    def getNTomograms(self):
        return self._nTomograms.get()

    def setNTomograms(self, n):
        self._nTomograms.set(n)

    def getFiles(self):
        d = self.getReportDir()
        return sorted(os.path.join(d, f) for f in os.listdir(d)) if d and os.path.isdir(d) else []

    def __str__(self):
        return f"{self.getClassName()} ({self.getNTomograms()} tomograms, {self.getReportDir()})"


class TomoRefinePseudoSubtomogram(SubTomogram):
    """One pseudo-subtomogram (or 2D stack) written by ``relion_tomo_subtomo``'s algorithm.

    The tilt-series id is kept in ``_volName`` as in reliontomo. Positions in Å relative to the
    tomogram centre (``rlnCenteredCoordinate*Angst``) and the RELION particle name are kept so a row
    can be matched to its STAR line.
    """

    TS_ID_ATTRIBUTE = "_volName"

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._relionParticleName = String()
        self._xInImg = Float()
        self._yInImg = Float()
        self._zInImg = Float()
        self._rdnSubset = Integer()
        self._opticsGroupId = Integer()
        self._visibleFrames = String()
        self._ctfFile = String()

    def getTsId(self):
        return self.getVolName()

    def setTsId(self, value):
        self.setVolName(value)

    def getRelionParticleName(self):
        return self._relionParticleName.get()

    def setRelionParticleName(self, value):
        self._relionParticleName.set(value)

    def getCentredAngst(self):
        return self._xInImg.get(), self._yInImg.get(), self._zInImg.get()

    def setCentredAngst(self, x, y, z):
        self._xInImg.set(x)
        self._yInImg.set(y)
        self._zInImg.set(z)

    def getRdnSubset(self):
        return self._rdnSubset.get()

    def setRdnSubset(self, value):
        self._rdnSubset.set(value)

    def getOpticsGroupId(self):
        return self._opticsGroupId.get()

    def setOpticsGroupId(self, value):
        self._opticsGroupId.set(value)

    def getVisibleFrames(self):
        return self._visibleFrames.get()

    def setVisibleFrames(self, value):
        self._visibleFrames.set(value)

    def getCtfFile(self):
        return self._ctfFile.get()

    def setCtfFile(self, value):
        self._ctfFile.set(value)


class TomoRefineSetOfPseudoSubtomograms(SetOfSubTomograms):
    """Pseudo-subtomograms plus the RELION files that describe them (optimisation set, particles,
    tomograms and trajectories STAR files); the sampling rate is tilt-series pixel × binning."""

    ITEM_TYPE = TomoRefinePseudoSubtomogram

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._filesMaster = String()
        self._tomograms = String()
        self._particles = String()
        self._trajectories = String()
        self._manifolds = String()
        self._referenceFsc = String()
        self._boxSize = Integer()
        self._croppedBoxSize = Integer()
        self._relionBinning = Float(1.0)
        self._tsSamplingRate = Float()
        self._nReParticles = Integer(0)
        self._are2dStacks = Boolean(False)
        self._areRe5Particles = Boolean(True)
        self._float16 = Boolean(False)

    @property
    def filesMaster(self):
        return self._filesMaster.get()

    @filesMaster.setter
    def filesMaster(self, path):
        self.setFilesMaster(path)

    def setFilesMaster(self, path):
        values = _read_optimisation_set(path)
        self._filesMaster.set(str(path))
        self._tomograms.set(values.get("rlnTomoTomogramsFile"))
        self._particles.set(values.get("rlnTomoParticlesFile"))
        self._trajectories.set(values.get("rlnTomoTrajectoriesFile"))
        self._manifolds.set(values.get("rlnTomoManifoldsFile"))
        self._referenceFsc.set(values.get("rlnTomoReferenceFscFile"))

    def getFilesMaster(self):
        return self._filesMaster.get()

    def getTomogramsStar(self):
        return self._tomograms.get()

    def getParticles(self):
        return self._particles.get()

    def setParticles(self, path):
        self._particles.set(path)

    # reliontomo's names for the same fields (RelionSetOfPseudoSubtomograms), so code written for its
    # sets also reads this one (used where reliontomo is not installed).
    def getParticlesStar(self):
        return self._particles.get()

    def getTrajectoriesStar(self):
        return self._trajectories.get()

    def setTomogramsStar(self, path):
        self._tomograms.set(path)

    def setTrajectoriesStar(self, path):
        self._trajectories.set(path)

    def areRe5Particles(self):
        return self._areRe5Particles.get()

    def setAreRe5Particles(self, value):
        self._areRe5Particles.set(value)

    def getTSIds(self):
        return self.getUniqueValues(TomoRefinePseudoSubtomogram.TS_ID_ATTRIBUTE)

    def getTrajectories(self):
        return self._trajectories.get()

    def getManifolds(self):
        return self._manifolds.get()

    def getReferenceFsc(self):
        return self._referenceFsc.get()

    def getBoxSize(self):
        return self._boxSize.get()

    def setBoxSize(self, value):
        self._boxSize.set(value)

    def getCroppedBoxSize(self):
        return self._croppedBoxSize.get()

    def setCroppedBoxSize(self, value):
        self._croppedBoxSize.set(value)

    def getRelionBinning(self):
        return self._relionBinning.get()

    def setRelionBinning(self, value):
        self._relionBinning.set(value)

    def getTsSamplingRate(self):
        return self._tsSamplingRate.get()

    def setTsSamplingRate(self, value):
        self._tsSamplingRate.set(value)

    def getCurrentSamplingRate(self):
        return self.getTsSamplingRate() * self.getRelionBinning()

    def getNReParticles(self):
        return self._nReParticles.get()

    def setNReParticles(self, value):
        self._nReParticles.set(value)

    def are2dStacks(self):
        return self._are2dStacks.get()

    def setAre2dStacks(self, value):
        self._are2dStacks.set(value)

    def isFloat16(self):
        return self._float16.get()

    def setFloat16(self, value):
        self._float16.set(value)

    def copyInfo(self, other):
        super().copyInfo(other)
        if isinstance(other, TomoRefineSetOfPseudoSubtomograms):
            self.copyAttributes(
                other, "_filesMaster", "_tomograms", "_particles", "_trajectories", "_manifolds", "_referenceFsc",
                "_boxSize", "_croppedBoxSize", "_relionBinning", "_tsSamplingRate", "_nReParticles",
                "_are2dStacks", "_areRe5Particles", "_float16",
            )

    def _samplingRateStr(self):
        return "%0.2f Å/px" % self.getCurrentSamplingRate()
