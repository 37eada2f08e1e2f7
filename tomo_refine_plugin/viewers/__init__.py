"""Scipion viewers of tomo-refine (every viewer class must be imported here to be found)."""
from .viewer_align import TomoRefineAlignViewer
from .viewer_pseudo_subtomos import TomoRefinePseudoSubtomoViewer
