"""The plugin registers with Scipion: entry point, Plugin class, objects, protocols, viewers, bibtex."""
import pytest

import pwem  # noqa: F401  (a hard install requirement: a missing Scipion must fail, not skip)


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


@pytest.mark.parametrize("program", ["subtomo", "align"])
def test_logged_command_line_parses_back_to_the_same_options(program):
    """The 'equivalent command line' a protocol logs is what the CLI turns into the same options."""
    import shlex
    from dataclasses import replace

    from tomo_refine_plugin.cli import build_parser
    from tomo_refine_plugin.protocols.protocol_base import cli_command

    if program == "subtomo":
        from tomo_refine_plugin.cli.subtomo import options_from_args
        from tomo_refine_plugin.compute.subtomo import SubtomoOptions

        opts = SubtomoOptions(o="/x/extra/", b=48, t="/x/t.star", p="/x/p y.star", crop=32, bin=2.0, stack2d=True,
                              float16=True, min_frames=3, max_dose=50.0, cone_weight=True, cone_angle=12.0, j=2,
                              only_do_unfinished=True)
    else:
        from tomo_refine_plugin.cli.align import options_from_args
        from tomo_refine_plugin.compute.align.program import AlignOptions

        opts = AlignOptions(o="/x/extra/", b=32, t="/x/t.star", p="/x/p.star", ref1="/x/h1.mrc", ref2="/x/h2.mrc",
                            mask="/x/m.mrc", r=6, it=50, j=2, only_do_unfinished=True)
    argv = shlex.split(cli_command(program, opts))[1:]
    parsed = options_from_args(build_parser().parse_args(argv))
    assert replace(parsed, o=opts.o) == opts
