"""The plugin registers with Scipion: entry point, Plugin class, objects, protocols, viewers, bibtex."""
import pytest

pytest.importorskip("pwem")


def test_plugin_is_discovered_through_the_entry_point():
    from pyworkflow.plugin import Domain

    plugins = Domain.getPlugins()
    assert "tomo_refine_plugin" in plugins
    module = plugins["tomo_refine_plugin"]
    plugin = module._pluginInstance
    # A pure-Python plugin: nothing to validate (a non-empty _pathVars makes every protocol fail validation).
    assert plugin._pathVars == []
    assert plugin.validateInstallation() == []
    assert plugin.getVar("TOMOREFINE_THREADS")


def test_bibtex_has_every_reference():
    from pyworkflow.plugin import Domain

    module = Domain.getPlugins()["tomo_refine_plugin"]
    for key in module._references + ["Zivanov2019"]:
        assert key in module._bibtex, key


def test_objects_protocols_and_viewers_are_found():
    from pyworkflow.plugin import Domain

    objects = Domain.getObjects()
    for name in ("TomoRefineSetOfPseudoSubtomograms", "TomoRefinePseudoSubtomogram",
                 "TomoRefineOptimisationSet", "TomoRefineAlignReport"):
        assert name in objects, name
    protocols = Domain.getProtocols()
    for name in ("ProtTomoRefineAlign", "ProtTomoRefinePseudoSubtomos", "ProtTomoRefineTestFixture"):
        assert name in protocols, name
    assert protocols["ProtTomoRefineTestFixture"].isDisabled()
    assert not protocols["ProtTomoRefineAlign"].isDisabled()
    viewers = Domain.getViewers()
    for name in ("TomoRefinePseudoSubtomoViewer", "TomoRefineAlignViewer"):
        assert name in viewers, name


def test_templates_are_listed():
    from pyworkflow.plugin import Domain

    plugin = Domain.getPlugins()["tomo_refine_plugin"]._pluginInstance
    names = [p.rsplit("/", 1)[-1] for p in plugin.getTemplates()]
    assert "tomo_refine.json.template" in names
