"""scipion-em-reliontomo accepts the pseudo-subtomograms of this plugin.

reliontomo is in the ``[test]`` extra, so these tests always run (it imports without RELION
binaries, which these tests never call). Checked with reliontomo's own code:

* the output is reliontomo's ``RelionSetOfPseudoSubtomograms``, and the pointer filter reliontomo's
  refine / classify / reconstruct / polish / CTF-refine inputs use (``strict=True``, through
  ``Project.getProtocolCompatibleOutputs``, what the GUI offers) lists it;
* ``ProtRelionRefineSubtomograms._validate()`` and the R5 reconstruct protocol accept it;
* reliontomo's reader, given our optimisation set and the input coordinates, builds the same items
  (files, tomograms, transforms, angles) as our protocol did;
* reliontomo's writer, which regenerates particles.star from the set before every relion_refine call,
  writes back our particles.star (names, images, positions, orientations, origins), and our engine
  reads that file.

relion_refine itself is not run (no RELION binary here).
"""
from __future__ import annotations

import os

import numpy as np
import pytest

import pwem  # noqa: F401  (a hard install requirement: a missing Scipion must fail, not skip)
import reliontomo.objects  # noqa: F401  (in the [test] extra; CI must exercise the reliontomo path)

from pyworkflow.tests import BaseTest, setupTestProject  # noqa: E402

from tomo_refine_plugin import constants as C  # noqa: E402
from tomo_refine_plugin.tests import test_scipion_protocols as base  # noqa: E402
from tomo_refine_plugin.tests.scipion_inputs import build_scipion_files  # noqa: E402

pytestmark = [pytest.mark.scipion, pytest.mark.slow]

CROP = 24


def _register_reliontomo():
    """reliontomo.protocols reads its plugin variables at import: register the plugin first, as Scipion does."""
    from pwem import Domain

    Domain.getPluginModule("reliontomo").Plugin  # noqa: B018 (registration is the side effect)


def _write_volume(path, size, pixel_size_angst):
    import mrcfile

    with mrcfile.new(path, overwrite=True) as m:
        m.set_data(np.zeros((size, size, size), np.float32))
        m.voxel_size = pixel_size_angst


def test_full_orientation_of_a_split_item():
    """A RelionPSubtomogram with A_sub + origin in its transform and A_part in its angles reads as the full
    orientation A_sub·A_part with the origin moved into that frame, so the particle position is unchanged."""
    from reliontomo.objects import RelionPSubtomogram

    from tomo_refine_plugin.compute.conventions import euler_zyz_to_matrix
    from tomo_refine_plugin.convert import relion_matrix_from_scipion
    from tomo_refine_plugin.reliontomo_compat import full_orientation_matrix, new_relion_item

    a_sub = np.asarray(euler_zyz_to_matrix(40.0, 70.0, -20.0)).reshape(3, 3)
    a_part = np.asarray(euler_zyz_to_matrix(-100.0, 30.0, 15.0)).reshape(3, 3)
    origin = np.array([3.0, -6.0, 9.0])  # Å, in the A_sub frame
    row = {"rlnTomoName": "TS_01", "rlnTomoSubtomogramRot": 40.0, "rlnTomoSubtomogramTilt": 70.0,
           "rlnTomoSubtomogramPsi": -20.0, "rlnAngleRot": -100.0, "rlnAngleTilt": 30.0, "rlnAnglePsi": 15.0,
           "rlnOriginXAngst": 3.0, "rlnOriginYAngst": -6.0, "rlnOriginZAngst": 9.0}
    item = new_relion_item(RelionPSubtomogram, row, 0, 12.0)
    m = full_orientation_matrix(item, set_pixel_size_angst=12.0, coord_pixel_size_angst=3.0)
    a_full = relion_matrix_from_scipion(m)
    np.testing.assert_allclose(a_full, a_sub @ a_part, atol=1e-12)
    origin_full = -m[:3, 3] * 3.0
    np.testing.assert_allclose(a_full @ origin_full, a_sub @ origin, atol=1e-12)
    # The attributes reliontomo's writer turns into rlnOrigin* / rlnAngle*.
    assert (item.getX(), item.getY(), item.getZ()) == (3.0, -6.0, 9.0)
    assert (item.getRot(), item.getTilt(), item.getPsi()) == (-100.0, 30.0, 15.0)


class TestReliontomoAcceptsPseudoSubtomograms(BaseTest):
    @classmethod
    def setUpClass(cls):
        cls._cwd = os.getcwd()
        setupTestProject(cls)
        _register_reliontomo()
        sim_dir = base.simulate(cls.getOutputPath("sim"))
        folder = cls.getOutputPath("scipion_rt")
        info = build_scipion_files(sim_dir, folder, copies={"TS_01": "TS_01"})
        cls.ts, cls.ctf, cls.coords, cls.tomos = base.import_inputs(cls, folder, info, "rt")
        cls.pix = info["TS_01"]["pixel_size"]

    @classmethod
    def tearDownClass(cls):
        os.chdir(cls._cwd)

    def _run_subtomo(self, stack2d):
        from tomo_refine_plugin.protocols import ProtTomoRefinePseudoSubtomos

        prot = self.newProtocol(ProtTomoRefinePseudoSubtomos, objLabel=f"subtomo stack2d={stack2d}",
                                inputTiltSeries=self.ts, inputCtfTomoSeries=self.ctf, inputParticles=self.coords,
                                boxSize=base.BOX, croppedBoxSize=CROP, binningFactor=1.0, write2dStacks=stack2d)
        self.launchProtocol(prot)
        return prot

    def _reference(self, label):
        from pwem.protocols import ProtImportVolumes

        path = self.getOutputPath(f"ref_{CROP}.mrc")
        _write_volume(path, CROP, self.pix)
        prot = self.newProtocol(ProtImportVolumes, objLabel=label, filesPath=path, samplingRate=self.pix)
        self.launchProtocol(prot)
        return prot.outputVolume

    def test_2d_stacks(self):
        self._check(stack2d=True)

    def test_3d_pseudo_subtomograms(self):
        self._check(stack2d=False)

    def _check(self, stack2d):
        import pyworkflow as pw
        from reliontomo.objects import RelionSetOfPseudoSubtomograms

        prot = self._run_subtomo(stack2d)
        out = prot.pseudoSubtomograms
        assert type(out) is RelionSetOfPseudoSubtomograms
        assert out.are2dStacks() == stack2d and out.areRe5Particles()
        assert out.getBoxSize() == CROP
        assert abs(out.getSamplingRate() - self.pix) < 1e-9 and abs(out.getTsSamplingRate() - self.pix) < 1e-9
        extra = os.path.abspath(prot._getExtraPath())
        assert os.path.abspath(out.filesMaster) == os.path.join(extra, C.OUT_OPTIMISATION_SET_STAR)
        assert os.path.abspath(out.getParticlesStar()) == os.path.join(extra, C.OUT_PARTICLES_STAR)
        # relion_tomo_subtomo leaves the tomograms unchanged: its optimisation set names the input tomograms.star.
        assert os.path.abspath(out.getTomogramsStar()) == os.path.join(extra, C.IN_TOMOGRAMS_STAR)
        assert out.getAcquisition().opticsGroupInfo.get()  # what reliontomo's writer needs
        assert out.getSize() == out.getNReParticles() > 0
        assert out.getTSIds() == ["TS_01"]

        # --- the input pointers of reliontomo's protocols accept the output (exact-class filter)
        from reliontomo.protocols import (ProtRelion3DClassifySubtomograms, ProtRelion5ReconstructParticle,
                                          ProtRelionCtfRefine, ProtRelionRefineSubtomograms,
                                          ProtRelionTomoFrameAlign)

        domain = pw.Config.getDomain()
        self.proj.getRuns(refresh=True)  # the project's run list is cached; the GUI refreshes it too
        for cls in (ProtRelionRefineSubtomograms, ProtRelion3DClassifySubtomograms, ProtRelion5ReconstructParticle,
                    ProtRelionTomoFrameAlign, ProtRelionCtfRefine):
            consumer = self.newProtocol(cls)
            self.proj.saveProtocol(consumer)  # a form's protocol is saved in the project before its inputs are chosen
            param = consumer.getParam("inReParticles")
            classes = [domain.findClass(c.strip()) for c in param.pointerClass.get().split(",")]
            offered = self.proj.getProtocolCompatibleOutputs(consumer, classes, param.pointerCondition.get(),
                                                             strictPointer=param.strictPointer.get())
            offered = [(p.getObjValue().getObjId(), p.getExtended()) for p in offered]
            assert (prot.getObjId(), "pseudoSubtomograms") in offered, (cls.__name__, offered)

        ref = self._reference(f"reference {CROP} px")
        refine = self.newProtocol(ProtRelionRefineSubtomograms, inReParticles=out, referenceVolume=ref,
                                  numberOfMpi=3, maskDiameter=120)
        assert refine._validate() == [], refine._validate()
        # The whole form check: only the missing RELION installation may be reported (none where RELION is set up).
        assert sorted(refine.validate()) == sorted(refine.validateInstallation() or []), refine.validate()
        rec = self.newProtocol(ProtRelion5ReconstructParticle, inReParticles=out, boxSize=CROP, croppedBoxSize=CROP,
                               numberOfMpi=3)
        assert rec._validate() == [], rec._validate()

        # --- reliontomo's reader builds the same items from our files
        from reliontomo.convert import readSetOfPseudoSubtomograms
        from reliontomo.objects import createSetOfRelionPSubtomograms

        reread_dir = self.getOutputPath(f"reread_{stack2d}")
        os.makedirs(reread_dir, exist_ok=True)
        theirs = createSetOfRelionPSubtomograms(reread_dir, out.filesMaster, self.coords,
                                                template="pseudosubtomograms%s.sqlite", tsSamplingRate=self.pix,
                                                relionBinning=1.0, boxSize=CROP, are2dStacks=stack2d,
                                                acquisition=self.ts.getAcquisition())
        # calculateWarpCoords=False: with True the reader asks the input coordinates for bottom-left positions
        # while iterating the set without attaching their tomograms, which raises for these coordinates
        # (reliontomo's own limitation; the Warp-export coordinates are not compared here).
        readSetOfPseudoSubtomograms(theirs, calculateWarpCoords=False)
        assert theirs.getSize() == out.getSize() == theirs.getNReParticles()
        ours = [i.clone() for i in out.iterItems(orderBy="id")]
        read = [i.clone() for i in theirs.iterItems(orderBy="id")]
        for a, b in zip(ours, read):
            assert a.getFileName() == b.getFileName() and os.path.exists(a.getFileName())
            assert a.getTsId() == b.getTsId() and a.getRelionParticleName() == b.getRelionParticleName()
            np.testing.assert_allclose(a.getTransform().getMatrix(), b.getTransform().getMatrix(), atol=1e-6)
            for getter in ("getRot", "getTilt", "getPsi", "getX", "getY", "getZ", "getXInImg", "getYInImg",
                           "getZInImg", "getRdnSubset", "getOpticsGroupId", "getClassId"):
                assert getattr(a, getter)() == pytest.approx(getattr(b, getter)(), abs=1e-6), getter
            assert a.getVisibleFrames() == b.getVisibleFrames() and a.getCtfFile() == b.getCtfFile()

        # --- reliontomo's writer (run by its refine before relion_refine) gives back our particles.star
        written_dir = self.getOutputPath(f"rewritten_{stack2d}")
        os.makedirs(written_dir, exist_ok=True)
        self._reliontomo_write(out, written_dir, stack2d)
        self._compare_particles(os.path.join(written_dir, "inParticles.star"), out.getParticlesStar(), stack2d)

    @staticmethod
    def _reliontomo_write(pset, folder, stack2d):
        from reliontomo import constants as rc
        from reliontomo.convert import convert50_tomo

        # Its writer extends these module-level column lists in place on every call; restore them so a
        # second call in this process writes the same columns.
        saved = {name: list(getattr(rc, name)) for name in ("particles2dStarFields", "particles3dStarFields")}
        try:
            convert50_tomo.Writer.pseudoSubtomograms2Star(pset, folder, are2dParticles=stack2d)
        finally:
            for name, columns in saved.items():
                getattr(rc, name)[:] = columns

    @staticmethod
    def _compare_particles(theirs_path, ours_path, stack2d):
        from tomo_refine_plugin.compute.io.particles import read_particle_set

        theirs = read_particle_set(theirs_path)
        ours = read_particle_set(ours_path)
        t, o = theirs.particles, ours.particles
        assert len(t) == len(o)
        assert int(theirs.general.get("rlnTomoSubTomosAre2DStacks", -1)) == int(stack2d)
        for col in ("rlnTomoName", "rlnTomoParticleName", "rlnImageName"):
            assert list(t[col].astype(str)) == list(o[col].astype(str)), col
        if stack2d:
            assert list(t["rlnTomoVisibleFrames"].astype(str)) == list(o["rlnTomoVisibleFrames"].astype(str))
        else:
            assert list(t["rlnCtfImage"].astype(str)) == list(o["rlnCtfImage"].astype(str))
        cols = [f"rlnCenteredCoordinate{a}Angst" for a in "XYZ"] + [f"rlnOrigin{a}Angst" for a in "XYZ"]
        np.testing.assert_allclose(t[cols].to_numpy(float), o[cols].to_numpy(float), atol=1e-4)
        np.testing.assert_allclose(theirs.subtomo_matrices(), ours.subtomo_matrices(), atol=1e-6)
        np.testing.assert_allclose(theirs.particle_matrices(), ours.particle_matrices(), atol=1e-6)
        assert list(t["rlnRandomSubset"].astype(int)) == list(o["rlnRandomSubset"].astype(int))
        for col in ("rlnTomoTiltSeriesPixelSize", "rlnVoltage", "rlnSphericalAberration", "rlnAmplitudeContrast"):
            assert float(theirs.optics[col].iloc[0]) == pytest.approx(float(ours.optics[col].iloc[0])), col
