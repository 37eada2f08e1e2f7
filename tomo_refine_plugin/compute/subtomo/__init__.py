"""Pseudo-subtomograms (``relion_tomo_subtomo``): :func:`run_subtomo` with :class:`SubtomoOptions`."""
from .program import SubtomoOptions, SubtomoResult, run_subtomo

__all__ = ["SubtomoOptions", "SubtomoResult", "run_subtomo"]
