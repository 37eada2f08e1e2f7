"""The simulator's own CTF and dose filter.

Written from RELION's published formulas (see ``docs`` notes, §4.1 and §4.3) and deliberately *not*
shared with :mod:`tomo_refine_plugin.compute.ctf`: the simulated images must expose a sign or
convention error in the engine rather than reproduce it.
"""
from __future__ import annotations

import numpy as np

__all__ = ["wavelength_angst", "rfft_frequencies_inv_angst", "relion_ctf", "grant_grigorieff_dose_weight"]


def wavelength_angst(voltage_kv: float) -> float:
    """Relativistic electron wavelength in Å (0.019687 Å at 300 kV)."""
    volts = voltage_kv * 1e3
    return 12.2643247 / np.sqrt(volts * (1.0 + 0.978466e-6 * volts))


def rfft_frequencies_inv_angst(box_px: int, pixel_size_angst: float) -> tuple[np.ndarray, np.ndarray]:
    """Spatial frequencies of an rfft half grid of a square box.

    Returns
    -------
    ky, kx
        float64 ``(box, 1)`` and ``(1, box//2+1)``, in Å⁻¹; ky wraps to negative above ``box/2``.
    """
    ky = np.fft.fftfreq(box_px, d=pixel_size_angst)[:, None]
    kx = np.fft.rfftfreq(box_px, d=pixel_size_angst)[None, :]
    return ky, kx


def relion_ctf(
    ky,
    kx,
    voltage_kv: float,
    cs_mm: float,
    amplitude_contrast: float,
    defocus_u_angst: float,
    defocus_v_angst: float,
    defocus_angle_deg: float,
    phase_shift_deg: float = 0.0,
    bfactor_angst2: float = 0.0,
    scale: float = 1.0,
) -> np.ndarray:
    """RELION's CTF, positive at low frequency (``+Q0`` at k = 0).

    ``CTF = scale · sin(πλΔf(θ)k² − (π/2)Csλ³k⁴ + φ + atan(Q0/√(1−Q0²))) · exp(−Bk²/4)`` with
    ``Δf(θ) = ΔfU cos²(θ−α) + ΔfV sin²(θ−α)`` (positive = underfocus).

    Parameters
    ----------
    ky, kx
        Broadcastable frequency arrays in Å⁻¹.

    Returns
    -------
    ctf
        float64, broadcast shape of ``ky, kx``.
    """
    lam = wavelength_angst(voltage_kv)
    cs_angst = cs_mm * 1e7
    k2 = kx * kx + ky * ky
    alpha = np.deg2rad(defocus_angle_deg)
    # Projection of k on the astigmatism axes: u = (cos α, sin α), v ⊥ u.
    ku = kx * np.cos(alpha) + ky * np.sin(alpha)
    kv = -kx * np.sin(alpha) + ky * np.cos(alpha)
    defocus_k2 = defocus_u_angst * ku * ku + defocus_v_angst * kv * kv
    q0 = amplitude_contrast
    gamma = (
        np.pi * lam * defocus_k2
        - 0.5 * np.pi * cs_angst * lam**3 * k2 * k2
        + np.deg2rad(phase_shift_deg)
        + np.arctan(q0 / np.sqrt(1.0 - q0 * q0))
    )
    return scale * np.sin(gamma) * np.exp(-0.25 * bfactor_angst2 * k2)


def grant_grigorieff_dose_weight(ky, kx, pre_exposure_e_per_angst2: float, bfactor_per_dose_angst2: float = 0.0):
    """RELION's dose filter for one tilt.

    Grant & Grigorieff (2015): ``w = exp(−0.5·D / (0.245·k^−1.665 + 2.81))`` with ``w(0) = 1``; with a per-dose
    B-factor ``β > 0`` instead ``w = exp(−β·D·k²/4)``. ``D`` is the tilt's pre-exposure (e⁻/Å²).
    """
    k2 = kx * kx + ky * ky
    dose = float(pre_exposure_e_per_angst2)
    if bfactor_per_dose_angst2 > 0:
        return np.exp(-0.25 * bfactor_per_dose_angst2 * dose * k2)
    k = np.sqrt(k2)
    with np.errstate(divide="ignore"):
        critical = 0.245 * np.power(k, -1.665, where=k > 0, out=np.full_like(k, np.inf)) + 2.81
    return np.exp(-0.5 * dose / critical)
