"""Scipion protocols of tomo-refine (every protocol class must be imported here to be found)."""
from .protocol_align import ProtTomoRefineAlign
from .protocol_base import ProtTomoRefineBase
from .protocol_pseudo_subtomos import ProtTomoRefinePseudoSubtomos
from .protocol_test_fixture import ProtTomoRefineTestFixture
