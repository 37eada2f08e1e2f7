"""Options of the dataset simulator (one frozen dataclass; the CLI flags are generated from it)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

__all__ = ["SimulationOptions"]


def _opt(default, help_text, **extra):
    return field(default=default, metadata={"help": help_text, **extra})


@dataclass(frozen=True)
class SimulationOptions:
    """What to simulate. Small defaults: one tomogram, 21 tilts, 192² px, 20 particles in a 32-px box (seconds).

    Errors are injected into the STAR files only; the images are always made with the true geometry.
    All RMS values are per axis unless stated otherwise.
    """

    n_tomograms: int = _opt(1, "number of tilt series (TS_01, TS_02, ...)")
    n_tilts: int = _opt(21, "tilts per series, symmetric about 0")
    tilt_step_deg: float = _opt(6.0, "nominal tilt increment (deg)")
    dose_symmetric: bool = _opt(True, "dose-symmetric acquisition order (Hagen), groups of --dose_group")
    dose_group: int = _opt(2, "tilts per side in each dose-symmetric group")
    dose_per_tilt_e_per_angst2: float = _opt(3.0, "electron dose per tilt image (e/A^2)")
    tilt_axis_deg: float = _opt(85.0, "nominal tilt-axis angle = rlnTomoZRot (deg)")
    image_size_px: tuple = _opt((192, 192), "tilt image width and height (px)", nargs=2, type=int)
    tomo_depth_px: int = _opt(64, "tomogram thickness rlnTomoSizeZ (px); X/Y size = image size")
    pixel_size_angst: float = _opt(6.0, "tilt-series pixel size (A/px)")
    box_px: int = _opt(32, "particle box and map size (px, even)")
    n_particles: int = _opt(20, "particles per tomogram")
    # The defaults (fine blobs, SNR 3) make the default dataset reconstruct the truth map to FSC >= 0.9 at
    # half Nyquist, so that it can check conventions at the resolutions where they matter.
    snr: float = _opt(3.0, "signal-to-noise power ratio inside the particle disc; inf = noiseless")
    defocus_angst: float = _opt(30000.0, "mean defocus (A, positive = underfocus)")
    defocus_spread_angst: float = _opt(1500.0, "per-tilt defocus standard deviation (A)")
    astigmatism_angst: float = _opt(300.0, "rlnDefocusU - rlnDefocusV (A)")
    voltage_kv: float = _opt(300.0, "acceleration voltage (kV)")
    cs_mm: float = _opt(2.7, "spherical aberration (mm)")
    amplitude_contrast: float = _opt(0.07, "amplitude contrast Q0")
    hand: float = _opt(-1.0, "rlnTomoHand (sign of the depth-dependent defocus)")
    apply_ctf: bool = _opt(True, "multiply the images by the CTF (with depth-dependent defocus)")
    apply_dose: bool = _opt(True, "multiply the images by the dose filter")
    true_angle_jitter_deg: float = _opt(0.3, "RMS of the TRUE angles about the nominal ones (deg)")
    true_shift_px: float = _opt(6.0, "RMS of the TRUE per-tilt shifts (px)")
    angle_err_deg: tuple = _opt((0.0, 0.0, 0.0), "injected per-tilt angle error RMS for XTilt YTilt ZRot (deg)",
                                nargs=3, type=float)
    shift_err_px: float = _opt(0.0, "injected per-tilt shift error RMS (px)")
    position_err_px: float = _opt(0.0, "injected particle position error RMS (px)")
    motion_angst_per_step: float = _opt(0.0, "RMS particle speed, A per chronological tilt step (smooth)")
    deformation_px: float = _opt(0.0, "RMS of the per-tilt 2D deformation over the image (px)")
    deformation_model: str = _opt("linear", "2D deformation model (only 'linear' is simulated)", choices=("linear",))
    ref_lowpass_angst: float = _opt(-1.0, "half-map low-pass resolution (A); <=0: 2.5 x pixel size")
    ref_noise: float = _opt(0.1, "half-map noise sigma relative to the map's standard deviation")
    ref_is_truth: bool = _opt(False, "half maps = the truth map exactly, no noise or low-pass (as the golden data)")
    inside_margin_px: float = _opt(-1.0, "keep every particle's projected centre this far inside every tilt image "
                                         "(true geometry, px); <0: box/2; 0: no constraint")
    mask_edge_px: float = _opt(6.0, "soft edge of the spherical mask (px)")
    n_blobs: int = _opt(12, "Gaussian blobs in the synthetic particle")
    n_fine_blobs: int = _opt(60, "extra point-like blobs (sigma --fine_sigma_px) for high-resolution content")
    fine_sigma_px: float = _opt(1.0, "sigma of the fine blobs (px, >= 1)")
    seed: int = _opt(0, "random seed; everything is deterministic for a seed")
    noise_seed: int = _opt(-1, "seed of the image noise alone; <0: drawn from --seed. The same dataset (geometry, "
                               "particles, errors) with another noise draw, to average an estimator's error over noise")

    def __post_init__(self):
        object.__setattr__(self, "image_size_px", tuple(int(v) for v in self.image_size_px))
        object.__setattr__(self, "angle_err_deg", tuple(float(v) for v in self.angle_err_deg))
        if self.box_px % 2 or self.box_px < 8:
            raise ValueError(f"box_px must be even and >= 8, got {self.box_px}")
        if self.n_tilts < 2 or self.n_tomograms < 1 or self.n_particles < 1:
            raise ValueError("need n_tilts >= 2, n_tomograms >= 1 and n_particles >= 1")
        if not (self.snr > 0 or math.isinf(self.snr)):
            raise ValueError(f"snr must be positive (inf for no noise), got {self.snr}")
        if min(self.image_size_px) < 2 * self.box_px:
            raise ValueError("image_size_px must be at least twice box_px")
        if self.deformation_model != "linear":
            raise ValueError("only the 'linear' deformation model is simulated")

    @property
    def tomo_size_px(self) -> tuple:
        return (self.image_size_px[0], self.image_size_px[1], int(self.tomo_depth_px))

    @property
    def inside_margin(self) -> float:
        return self.box_px / 2.0 if self.inside_margin_px < 0 else float(self.inside_margin_px)

    @property
    def ref_lowpass_resolution_angst(self) -> float:
        return self.ref_lowpass_angst if self.ref_lowpass_angst > 0 else 2.5 * self.pixel_size_angst
