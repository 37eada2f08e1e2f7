"""tomo-refine: RELION-5-class tilt-series refinement and pseudo-subtomograms, as a Scipion plugin.

The Scipion ``Plugin`` class is defined only when pwem is importable, so that the engine and the
command line work in a plain Python environment too. (Scipion itself always has pwem.)
"""
__version__ = "0.1.0"
_logo = "icon.png"
_references = ["Burt2024", "Zivanov2022"]

try:  # pwem is a hard install requirement; this guard only serves engine-only environments
    import pwem
except ImportError:  # pragma: no cover - exercised only without Scipion
    pwem = None

if pwem is not None:

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

            return [str(p) for p in (Path(__file__).parent / "templates").glob("*.json.template")]
