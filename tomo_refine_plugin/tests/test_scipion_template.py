"""The workflow template runs headless: fill its fields, load it into a new project, launch each
protocol in order (the sequential driver recommended for pipelines) and check every one finishes."""
from __future__ import annotations

import json
import os
import shutil
import time

import pytest

import pwem  # noqa: F401  (a hard install requirement: a missing Scipion must fail, not skip)

pytestmark = [pytest.mark.scipion, pytest.mark.slow]

from tomo_refine_plugin.tests.scipion_inputs import build_scipion_files  # noqa: E402
from tomo_refine_plugin.tests.test_scipion_protocols import simulate  # noqa: E402


def _template_path():
    from pyworkflow.plugin import Domain

    plugin = Domain.getPlugins()["tomo_refine_plugin"]._pluginInstance
    return next(p for p in plugin.getTemplates() if p.endswith("tomo_refine.json.template"))


def fill_template(values):
    """The template's JSON with the fields set through their aliases; returns (path, json list)."""
    from pyworkflow.template import LocalTemplate

    template = LocalTemplate("tomo_refine_plugin", _template_path())
    template.replaceEnvVariables()
    template.parseContent()
    for alias, value in values.items():
        assert template.setParamValue(alias, str(value)), alias
    path = template.createTemplateFile()
    with open(path) as fh:
        text = fh.read()
    assert "~" not in text, "a template field was left unfilled"
    return path, json.loads(text)


def test_template_fields_and_classes(tmp_path):
    """Every field has an alias, and every class the template names is known to the domain."""
    from pyworkflow.plugin import Domain

    for name in ("o.star", "h1.mrc", "h2.mrc"):
        (tmp_path / name).write_text("")
    d = str(tmp_path)
    path, protocols = fill_template({"dataDir": d, "pixelSize": 6, "tomoPixelSize": 48, "orientations": f"{d}/o.star",
                                     "half1": f"{d}/h1.mrc", "half2": f"{d}/h2.mrc", "boxSize": 32, "cropSize": 24})
    os.remove(path)
    known = Domain.getProtocols()
    for p in protocols:
        assert p["object.className"] in known, p["object.className"]
    assert [p["object.className"] for p in protocols][-2:] == ["ProtTomoRefineAlign", "ProtTomoRefinePseudoSubtomos"]
    assert protocols[0]["filesPath"] == d and protocols[2]["filesPath"] == d


def test_template_runs_headless(tmp_path):
    from pyworkflow.project import Manager
    from pyworkflow.protocol import STATUS_FINISHED

    sim_dir = simulate(str(tmp_path / "sim"))
    data = str(tmp_path / "data")
    info = build_scipion_files(sim_dir, data)["TS_01"]
    path, _ = fill_template({
        "dataDir": data, "voltage": info["voltage"], "cs": info["cs"], "q0": info["q0"],
        "pixelSize": info["pixel_size"], "tiltAxis": info["tilt_axis"], "dosePerTilt": info["dose_per_tilt"],
        "tomoPixelSize": info["tomo_pixel_size"], "orientations": os.path.join(data, "orientations.star"),
        "half1": os.path.join(sim_dir, "ref_half1.mrc"), "half2": os.path.join(sim_dir, "ref_half2.mrc"),
        "boxSize": 32, "cropSize": 24, "maxPosErr": 6,
    })
    manager = Manager()
    name = "TomoRefineTemplateTest"
    proj_path = manager.getProjectPath(name)
    shutil.rmtree(proj_path, ignore_errors=True)
    cwd = os.getcwd()
    project = manager.createProject(name)
    os.chdir(project.path)
    try:
        project.loadProtocols(path)
        runs = sorted(project.getRuns(), key=lambda p: p.getObjId())
        assert len(runs) == 7
        for prot in runs:
            t0 = time.time()
            project.launchProtocol(prot, wait=True)
            prot = project.getProtocol(prot.getObjId())
            assert prot.getStatus() == STATUS_FINISHED, (prot.getRunName(), prot.getErrorMessage())
            print(f"{prot.getClassName()}: {time.time() - t0:.1f} s")
        last = project.getProtocol(runs[-1].getObjId())
        assert last.pseudoSubtomograms.getSize() > 0
    finally:
        os.chdir(cwd)
        os.remove(path)
