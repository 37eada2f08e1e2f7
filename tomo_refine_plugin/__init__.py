"""tomo-refine: RELION-5-class tilt-series refinement and pseudo-subtomograms, as a Scipion plugin.

The Scipion ``Plugin`` class is created on first access (PEP 562 module ``__getattr__``), so that
``import tomo_refine_plugin`` (the engine, the CLI, a test's conftest) does not import pwem and
pyworkflow: pyworkflow reads its configuration from the environment at import time, and the CLI
should start fast. Scipion's ``Domain.registerPlugin`` reads ``module.Plugin`` and gets the class.
"""
__version__ = "0.1.0"
_logo = "icon.png"
_references = ["Burt2024", "Zivanov2022", "Zivanov2019"]

_plugin_class = None


def _make_plugin_class():
    import pwem

    class Plugin(pwem.Plugin):
        """Pure-Python plugin: no binaries, so no paths to validate (``_pathVars`` must stay empty)."""

        _homeVar = ""
        _pathVars = []
        _supportedVersions = [__version__]
        _url = "https://github.com/tomo-refine/scipion-em-tomorefine"

        @classmethod
        def _defineVariables(cls):
            cls._defineVar("TOMOREFINE_THREADS", "2")

        @classmethod
        def defineBinaries(cls, env):
            pass

        @classmethod
        def getTemplates(cls):
            from pathlib import Path

            return sorted(str(p) for p in (Path(__file__).parent / "templates").glob("*.json.template"))

    Plugin.__module__ = __name__
    Plugin.__qualname__ = "Plugin"
    return Plugin


def __getattr__(name):
    global _plugin_class
    if name == "Plugin":
        if _plugin_class is None:
            _plugin_class = _make_plugin_class()
        return _plugin_class
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
