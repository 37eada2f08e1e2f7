"""The Scipion protocols in a real, headless pyworkflow project.

Inputs are made by scipion-em-tomo's importers from a small simulated dataset with two tomograms
(tilt stacks, .tlt, coordinates, an empty binned tomogram) plus the plugin's hidden fixture protocol
(IMOD .xf alignment, per-tilt CTF, particle orientations). A third tomogram, imported on its own,
provides the "wrong" inputs for the validation tests.

Checks: the refinement lowers the reprojection error against the simulation's truth; the refined
tilt series converted back from Scipion reproduce the engine's angles; the pseudo-subtomograms equal
the engine's output for the same STAR files; a run stopped by a failure on the second tomogram and
resumed does not redo the first one; bad inputs are refused with clear messages, also when launched
without validation.
"""
from __future__ import annotations

import os
import re
import shutil
import time

import numpy as np
import pytest

import pwem  # noqa: F401  (a hard install requirement: a missing Scipion must fail, not skip)

from pyworkflow.protocol import MODE_RESUME, STATUS_FAILED  # noqa: E402
from pyworkflow.tests import BaseTest, setupTestProject  # noqa: E402

from tomo_refine_plugin import constants as C  # noqa: E402
from tomo_refine_plugin.tests.scipion_inputs import build_scipion_files  # noqa: E402

pytestmark = [pytest.mark.scipion, pytest.mark.slow]

SIM = dict(n_tomograms=1, n_tilts=11, tilt_step_deg=10.0, image_size_px=(128, 128), tomo_depth_px=48,
           pixel_size_angst=6.0, box_px=32, n_particles=10, snr=4.0, angle_err_deg=(0.0, 0.3, 0.3),
           shift_err_px=2.0, position_err_px=1.0, seed=3)
BOX = 32
COPIES = {"TS_01": "TS_01", "TS_02": "TS_01"}  # two tomograms (resume, per-tomogram steps) from one simulation


def simulate(out_dir):
    """The small dataset (engine simulator), written once per session folder."""
    if os.environ.get("TOMO_REFINE_SCIPION_DATASET"):  # development: an existing RELION 5 dataset folder
        return os.environ["TOMO_REFINE_SCIPION_DATASET"]
    from tomo_refine_plugin.compute.simulate import SimulationOptions, simulate_dataset

    if not os.path.exists(os.path.join(out_dir, "tomograms.star")):
        simulate_dataset(out_dir, SimulationOptions(**SIM))
    return out_dir


def import_inputs(test, folder, info, label):
    """ImportTs → ImportTomograms → ImportCoordinates3D → fixture; returns (ts, ctf, coords, tomos)."""
    from tomo.protocols import ProtImportCoordinates3D, ProtImportTomograms, ProtImportTs

    from tomo_refine_plugin.protocols import ProtTomoRefineTestFixture

    first = next(iter(info.values()))
    prot_ts = test.newProtocol(
        ProtImportTs, objLabel=f"{label} tilt series", filesPath=folder, filesPattern="{TS}.mrcs", anglesFrom=2,
        voltage=first["voltage"], sphericalAberration=first["cs"], amplitudeContrast=first["q0"],
        magnification=50000, samplingRate=first["pixel_size"], tiltAxisAngle=first["tilt_axis"],
        dosePerFrame=first["dose_per_tilt"])
    test.launchProtocol(prot_ts)
    prot_tomo = test.newProtocol(ProtImportTomograms, objLabel=f"{label} tomograms", filesPath=folder,
                                 filesPattern="*.mrc", samplingRate=first["tomo_pixel_size"])
    test.launchProtocol(prot_tomo)
    tomos = getattr(prot_tomo, "Tomograms")
    prot_coords = test.newProtocol(ProtImportCoordinates3D, objLabel=f"{label} coordinates", filesPath=folder,
                                   filesPattern="*.txt", importTomograms=tomos, boxSize=BOX // 8,
                                   samplingRate=first["tomo_pixel_size"])
    test.launchProtocol(prot_coords)
    fixture = test.newProtocol(ProtTomoRefineTestFixture, objLabel=f"{label} alignment+CTF",
                               inputTiltSeries=prot_ts.outputTiltSeries, filesPath=folder,
                               inputCoordinates=prot_coords.outputCoordinates,
                               orientationsStar=os.path.join(folder, "orientations.star"))
    test.launchProtocol(fixture)
    return fixture.outputTiltSeries, fixture.outputSetOfCTFTomoSeries, fixture.outputCoordinates, tomos


def import_half_maps(test, sim_dir, pixel_size, label):
    from pwem.protocols import ProtImportVolumes

    prot = test.newProtocol(ProtImportVolumes, objLabel=label, filesPath=os.path.join(sim_dir, "ref_half1.mrc"),
                            samplingRate=pixel_size, setHalfMaps=True,
                            half1map=os.path.join(sim_dir, "ref_half1.mrc"),
                            half2map=os.path.join(sim_dir, "ref_half2.mrc"))
    test.launchProtocol(prot)
    return prot.outputVolume


def reprojection_rms_px(tomograms_star, particles_star, truth_dir, cwd, copies):
    """RMS over particle-tilts of the 2D distance between estimated and true projections (px).

    ``copies`` {tsId: source tsId}: a copied tomogram's particle ``<tsId>/<k>`` is the source's ``<src>/<k>``.
    """
    from tomo_refine_plugin.compute.geometry import particle_positions_px, project_points
    from tomo_refine_plugin.compute.io.particles import read_particle_set
    from tomo_refine_plugin.compute.io.tomograms import read_tomogram_set

    def uv(tstar, pstar):
        tset, pset = read_tomogram_set(tstar), read_particle_set(pstar)
        out = {}
        for name in tset.names():
            rows = pset.for_tomogram(name)
            pix, size = tset.pixel_size_angst(name), tset.tomo_size_px(name)
            pos = particle_positions_px(pset.centred_angst(rows, size, pix), pix, size, pset.origins_angst(rows),
                                        pset.subtomo_matrices(rows))
            proj = project_points(tset.geometry(name).projection_matrices(), pos)
            for pname, track in zip(rows["rlnTomoParticleName"].astype(str), proj):
                out[pname] = track
        return out

    here = os.getcwd()
    os.chdir(cwd)
    try:
        est = uv(tomograms_star, particles_star)
        true = uv(os.path.join(truth_dir, "tomograms.star"), os.path.join(truth_dir, "particles.star"))
    finally:
        os.chdir(here)
    def source(name):
        tomo, k = name.rsplit("/", 1)
        return f"{copies.get(tomo, tomo)}/{k}"

    d = np.concatenate([np.linalg.norm(est[k] - true[source(k)], axis=-1).ravel() for k in est])
    return float(np.sqrt(np.mean(d ** 2)))


class TestTomoRefineProtocols(BaseTest):
    @classmethod
    def setUpClass(cls):
        cls._cwd = os.getcwd()  # setupTestProject chdirs into the project; the rest of the session must not see it
        setupTestProject(cls)
        cls.sim_dir = simulate(cls.getOutputPath("sim"))
        cls.main_dir = cls.getOutputPath("scipion_main")
        cls.info = build_scipion_files(cls.sim_dir, cls.main_dir, copies=COPIES)
        cls.other_dir = cls.getOutputPath("scipion_other")
        cls.ts, cls.ctf, cls.coords, cls.tomos = import_inputs(cls, cls.main_dir, cls.info, "main")
        pix = cls.info["TS_01"]["pixel_size"]
        cls.ref = import_half_maps(cls, cls.sim_dir, pix, "half maps")

    @classmethod
    def tearDownClass(cls):
        os.chdir(cls._cwd)

    # ---------------------------------------------------------------- helpers
    def _subtomo(self, label, **kw):
        from tomo_refine_plugin.protocols import ProtTomoRefinePseudoSubtomos

        params = dict(objLabel=label, inputTiltSeries=self.ts, inputCtfTomoSeries=self.ctf,
                      inputParticles=self.coords, boxSize=BOX, croppedBoxSize=24, binningFactor=1.0)
        params.update(kw)
        return self.newProtocol(ProtTomoRefinePseudoSubtomos, **params)

    def _align(self, label, **kw):
        from tomo_refine_plugin.protocols import ProtTomoRefineAlign

        params = dict(objLabel=label, inputTiltSeries=self.ts, inputCtfTomoSeries=self.ctf,
                      inputParticles=self.coords, inputReference=self.ref, boxSize=BOX, maxPosErr=6)
        params.update(kw)
        return self.newProtocol(ProtTomoRefineAlign, **params)

    # ---------------------------------------------------------------- tests
    def test_inputs_convert_to_the_dataset_geometry(self):
        """What the protocol writes for RELION equals the simulated dataset, except the dropped XTilt."""
        from tomo_refine_plugin.compute.io.particles import read_particle_set
        from tomo_refine_plugin.compute.io.tomograms import read_tomogram_set
        from tomo_refine_plugin.convert import TiltSeriesInfo

        ctf = {c.getTsId(): c for c in self.ctf.iterItems()}
        tomos = {t.getTsId(): t.clone() for t in self.tomos.iterItems()}
        ts = next(iter(self.ts.iterItems()))
        info = TiltSeriesInfo(ts, ctf[ts.getTsId()], tomos[ts.getTsId()])
        cwd = os.getcwd()
        os.chdir(self.sim_dir)
        try:
            sim = read_tomogram_set("tomograms.star")
            table = sim.tilt_table("TS_01")
            sim_particles = read_particle_set("particles.star").particles
        finally:
            os.chdir(cwd)
        for col in ("rlnTomoYTilt", "rlnTomoZRot", "rlnTomoXShiftAngst", "rlnTomoYShiftAngst", "rlnDefocusU",
                    "rlnDefocusV", "rlnMicrographPreExposure"):
            np.testing.assert_allclose(info.table[col].to_numpy(float), table[col].to_numpy(float), atol=1e-4,
                                       err_msg=col)
        assert info.tomo_size_px == tuple(sim.tomo_size_px("TS_01"))
        # Particle positions and orientations through Scipion's Coordinate3D and back.
        prot = self._subtomo("convert check")
        from tomo_refine_plugin.convert import particle_rows

        rows = particle_rows(prot._particleItems(), {"TS_01": 6.0, "TS_02": 6.0})
        rows = rows[rows["rlnTomoName"] == "TS_01"].reset_index(drop=True)
        cols = [f"rlnCenteredCoordinate{a}Angst" for a in "XYZ"]
        np.testing.assert_allclose(rows[cols].to_numpy(float), sim_particles[cols].to_numpy(float), atol=1e-3)
        from tomo_refine_plugin.compute.conventions import euler_zyz_to_matrix
        from tomo_refine_plugin.compute.io.particles import ParticleSet

        a_scipion = euler_zyz_to_matrix(rows["rlnTomoSubtomogramRot"], rows["rlnTomoSubtomogramTilt"],
                                        rows["rlnTomoSubtomogramPsi"])
        a_sim = ParticleSet(general={}, optics=None, particles=sim_particles, path=None).particle_matrices(
            sim_particles)
        np.testing.assert_allclose(a_scipion, a_sim, atol=1e-6)

    def test_align_refines_and_outputs_round_trip(self):
        from tomo_refine_plugin.convert import TiltSeriesInfo

        # Two tomogram steps at once (ThreadStepExecutor), one engine thread each.
        prot = self._align("refine", numberOfThreads=3, binThreads=1)
        t0 = time.time()
        self.launchProtocol(prot)
        print(f"align protocol: {time.time() - t0:.1f} s")
        extra = os.path.abspath(prot._getExtraPath())
        truth = os.path.join(self.sim_dir, "truth")
        before = reprojection_rms_px(os.path.join(extra, C.IN_TOMOGRAMS_STAR),
                                     os.path.join(extra, C.IN_PARTICLES_STAR), truth, self.sim_dir, COPIES)
        after = reprojection_rms_px(os.path.join(extra, C.OUT_TOMOGRAMS_STAR),
                                    os.path.join(extra, C.OUT_PARTICLES_STAR), truth, self.sim_dir, COPIES)
        print(f"reprojection RMS vs truth: before {before:.3f} px, after {after:.3f} px")
        assert after < 0.5 * before and after < 1.0

        # The refined Scipion tilt series convert back to the engine's angles and shifts (XTilt via the
        # extra attribute), so a downstream protocol sees exactly the refined geometry.
        from tomo_refine_plugin.compute.io.tomograms import read_tomogram_set

        engine = read_tomogram_set(os.path.join(extra, C.OUT_TOMOGRAMS_STAR))
        ctf = {c.getTsId(): c for c in self.ctf.iterItems()}
        tomos = {t.getTsId(): t.clone() for t in self.tomos.iterItems()}
        out_ts = prot.refinedTiltSeries
        self.assertSetSize(out_ts, 2)
        for ts in out_ts.iterItems():
            info = TiltSeriesInfo(ts, ctf[ts.getTsId()], tomos[ts.getTsId()])
            table = engine.tilt_table(ts.getTsId())
            for col in ("rlnTomoXTilt", "rlnTomoYTilt", "rlnTomoZRot", "rlnTomoXShiftAngst", "rlnTomoYShiftAngst"):
                np.testing.assert_allclose(info.table[col].to_numpy(float), table[col].to_numpy(float), atol=1e-6,
                                           err_msg=col)
        self.assertSetSize(prot.refinedCoordinates, self.coords.getSize())
        oset = prot.optimisationSet
        assert os.path.exists(oset.getFilesMaster()) and oset.getTomogramsStar()

        # Viewers draw the per-tilt report, trajectories and projected particles headless.
        from tomo_refine_plugin.viewers import TomoRefineAlignViewer

        viewer = TomoRefineAlignViewer(project=self.proj, protocol=prot)
        viewer.setProtocol(prot)
        for kind in ("report", "trajectories", "projected"):
            png = self.getOutputPath(f"align_{kind}.png")
            viewer.plotter(kind).savefig(png)
            assert os.path.getsize(png) > 5000, kind
        # Opened on the output report object instead of the protocol (Scipion's "Analyze results" on an output).
        viewer = TomoRefineAlignViewer(project=self.proj, protocol=prot.alignReport)
        viewer.setProtocol(prot.alignReport)
        png = self.getOutputPath("align_report_from_output.png")
        viewer.plotter("report").savefig(png)
        assert os.path.getsize(png) > 5000

    def test_pseudo_subtomos_equal_engine_and_resume(self):
        from tomo_refine_plugin.compute.io.mrc import read_mrc
        from tomo_refine_plugin.compute.subtomo.program import run_subtomo

        # Break the second tomogram's stack (valid header, truncated data): the run stops on TS_02 after
        # finishing TS_01, like a job killed mid-run.
        stack = os.path.join(self.main_dir, "TS_02.mrcs")
        hidden = stack + ".hidden"
        os.rename(stack, hidden)
        with open(os.path.realpath(hidden), "rb") as src, open(stack, "wb") as dst:
            dst.write(src.read(1024 + 4096))
        prot = self._subtomo("pseudo-subtomos (resume)")
        try:
            self.proj.launchProtocol(prot, wait=True)
        finally:
            os.remove(stack)
            os.rename(hidden, stack)
        self.assertEqual(prot.getStatus(), STATUS_FAILED)
        first = sorted(self._part_files(prot, "TS_01"))
        assert first, "TS_01 should have been finished before the failure"
        assert not self._part_files(prot, "TS_02")
        # The cluster recipe (README "Running on a cluster"): the logged command with --only_tomos does
        # the missing tomogram outside Scipion; Continue then skips it as well.
        from dataclasses import replace

        run_subtomo(replace(prot.engineOptions(), only_tomos=("TS_02",)))
        second = sorted(self._part_files(prot, "TS_02"))
        assert second
        stamps = {f: os.stat(f).st_mtime_ns for f in first + second}

        prot.runMode.set(MODE_RESUME)
        t0 = time.time()
        self.launchProtocol(prot)
        print(f"resumed pseudo-subtomos: {time.time() - t0:.1f} s")
        assert {f: os.stat(f).st_mtime_ns for f in first + second} == stamps, "a finished tomogram was redone"
        out = prot.pseudoSubtomograms
        n = self.coords.getSize()
        assert 0 < out.getSize() <= n
        assert out.getSize() == out.getNReParticles()
        log = open(prot.getStdoutLog()).read() if hasattr(prot, "getStdoutLog") else ""
        assert len(re.findall(r"tomogram TS_01 done", log)) <= 1

        # Same STAR inputs through the engine directly (what `tomo-refine subtomo` runs): same volumes.
        cli_dir = self.getOutputPath("cli_subtomo")
        shutil.rmtree(cli_dir, ignore_errors=True)
        opts = prot.engineOptions()
        run_subtomo(replace(opts, o=cli_dir, only_tomos=None, merge_only=False, only_do_unfinished=False))
        compared = 0
        for item in out.iterItems():
            path = item.getFileName()
            rel = os.path.relpath(os.path.abspath(path), os.path.abspath(prot._getExtraPath()))
            data_p, _ = read_mrc(path)
            data_c, _ = read_mrc(os.path.join(cli_dir, rel))
            np.testing.assert_allclose(data_p, data_c, rtol=0, atol=1e-6)
            compared += 1
        assert compared == out.getSize()

        # The pseudo-subtomogram set is itself a valid particle input (SetOfSubTomograms path of the
        # converter): its rows give back the positions and orientations that went in.
        from tomo_refine_plugin.compute.conventions import euler_zyz_to_matrix
        from tomo_refine_plugin.compute.io.particles import read_particle_set
        from tomo_refine_plugin.convert import particle_rows

        again = particle_rows(self._align("from subtomos", inputParticles=out, inputTomograms=self.tomos)
                              ._particleItems(), {"TS_01": 6.0, "TS_02": 6.0})
        written = read_particle_set(os.path.join(prot._getExtraPath(), C.OUT_PARTICLES_STAR)).particles
        assert len(again) == len(written)

        def canonical(rows):
            xyz = rows[[f"rlnCenteredCoordinate{a}Angst" for a in "XYZ"]].to_numpy(float)
            rot = [c for c in ("rlnTomoSubtomogramRot", "rlnTomoSubtomogramTilt", "rlnTomoSubtomogramPsi")]
            a = euler_zyz_to_matrix(*(rows[c].to_numpy(float) for c in rot)) if rot[0] in rows else None
            order = np.lexsort(xyz.T)
            return xyz[order], (a[order] if a is not None else None)

        xyz_a, a_a = canonical(again)
        xyz_w, a_w = canonical(written)
        np.testing.assert_allclose(xyz_a, xyz_w, atol=1e-3)
        np.testing.assert_allclose(a_a, a_w, atol=1e-6)

        from tomo_refine_plugin.viewers import TomoRefinePseudoSubtomoViewer

        viewer = TomoRefinePseudoSubtomoViewer(project=self.proj, protocol=out)
        viewer.setProtocol(out)
        png = self.getOutputPath("pseudo_subtomo.png")
        viewer.plotter(2).savefig(png)
        assert os.path.getsize(png) > 5000

    def _part_files(self, prot, ts_id):
        root = os.path.abspath(prot._getExtraPath())
        found = []
        for d, _, files in os.walk(root):
            found += [os.path.join(d, f) for f in files if ts_id in os.path.join(d, f) and f.endswith((".mrc", ".mrcs"))]
        return found

    def test_bad_inputs_are_refused(self):
        other = build_scipion_files(self.sim_dir, self.other_dir, copies={"TS_03": "TS_01"})
        ts3, ctf3, coords3, _ = import_inputs(self, self.other_dir, other, "other")
        prot = self._subtomo("no CTF", inputCtfTomoSeries=ctf3)
        errors = " ".join(prot.validate())
        assert "have no CTF" in errors and "TS_01" in errors, errors
        prot = self._subtomo("foreign particles", inputParticles=coords3)
        errors = " ".join(prot.validate())
        assert "TS_03" in errors and "no tilt series" in errors, errors
        wrong_ref = import_half_maps(self, self.sim_dir, 2 * self.info["TS_01"]["pixel_size"], "wrong-size maps")
        prot = self._align("wrong reference", inputReference=wrong_ref)
        errors = " ".join(prot.validate())
        assert "Å/px" in errors and "resample" in errors, errors
        assert not self._subtomo("good").validate()
        # The estimation box may exceed the reference's (zero-padded, as --b), never be smaller.
        assert not self._align("larger box", boxSize=BOX + 16).validate()
        errors = " ".join(self._align("smaller box", boxSize=BOX - 8).validate())
        assert "larger than the estimation box" in errors, errors
        # Shift-only is hidden in the form; a workflow that sets it anyway is refused, never half-run.
        errors = " ".join(self._align("shift only", alignByShift=True).validate())
        assert "--shift_only" in errors, errors
        # The first step checks again (pipelines may launch without validating).
        from tomo_refine_plugin.compute.errors import InputError

        with pytest.raises(InputError, match="have no CTF"):
            self._subtomo("no CTF, step", inputCtfTomoSeries=ctf3).prepareStep()
        with pytest.raises(InputError, match="resample"):
            self._align("wrong reference, step", inputReference=wrong_ref).prepareStep()

        # launchProtocol skips validate(): the first step must refuse too, with the same message.
        prot = self._subtomo("no CTF, launched", inputCtfTomoSeries=ctf3)
        self.proj.launchProtocol(prot, wait=True)
        self.assertEqual(prot.getStatus(), STATUS_FAILED)
        assert "have no CTF" in (prot.getErrorMessage() or "") + open(prot.getStdoutLog()).read() + \
            open(prot.getStderrLog()).read()
