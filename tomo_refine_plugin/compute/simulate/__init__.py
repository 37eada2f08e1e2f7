"""Simulated RELION-5 datasets with known truth, made with a real-space projector of their own."""
from .options import SimulationOptions
from .program import SimulationResult, dose_symmetric_order, linear_deformation_px, simulate_dataset

__all__ = ["SimulationOptions", "SimulationResult", "simulate_dataset", "dose_symmetric_order",
           "linear_deformation_px"]
