"""Higher-order aberrations as RELION stores them: Zernike coefficients ``rlnEvenZernike`` / ``rlnOddZernike``.

RELION evaluates the polynomials in Cartesian form with ``ρ = |k|`` in Å⁻¹ (not normalised to a unit
disk) and ``φ = atan2(ky, kx)``; the coefficient index maps to ``(m, n)`` through its own tables
(``Zernike::evenIndexToMN`` / ``oddIndexToMN``):

* even index ``i``: ``k = ⌊√i⌋``, ``m = 2(i − k² − k)``, ``n = 2k`` (0:(0,0), 1:(−2,2), 2:(0,2), 3:(2,2), 4:(−4,4), …)
* odd index ``i``: ``k = ⌊(√(1+4i) − 1)/2⌋``, ``n = 2k+1``, ``m = 2(i − k² − k) − n``
  (0:(−1,1), 1:(1,1), 2:(−3,3), 3:(−1,3), 4:(1,3), 5:(3,3), …)
* ``Z = R_n^|m|(ρ)·cos(mφ)`` for ``m ≥ 0`` and ``R_n^|m|(ρ)·sin(|m|φ)`` for ``m < 0``.

The symmetric sum ``Σ c_i Z_even,i`` is added to the CTF phase γ (:mod:`.ctf`); the antisymmetric sum
``φ_odd = Σ c_i Z_odd,i`` multiplies observations by ``exp(−i·φ_odd)``.
"""
from __future__ import annotations

from math import factorial, isqrt

import numpy as np

from .fourier import rfft_frequencies_2d

__all__ = [
    "even_index_to_mn",
    "odd_index_to_mn",
    "zernike_radial",
    "zernike_cartesian",
    "zernike_even_phase_rfft_2d",
    "zernike_odd_phase_rfft_2d",
]


def even_index_to_mn(index: int) -> tuple[int, int]:
    """``(m, n)`` of RELION's even Zernike coefficient ``index`` (0-based)."""
    index = int(index)
    if index < 0:
        raise ValueError(f"Zernike index must be >= 0, got {index}")
    k = isqrt(index)
    return 2 * (index - k * k - k), 2 * k


def odd_index_to_mn(index: int) -> tuple[int, int]:
    """``(m, n)`` of RELION's odd Zernike coefficient ``index`` (0-based)."""
    index = int(index)
    if index < 0:
        raise ValueError(f"Zernike index must be >= 0, got {index}")
    # floor((sqrt(1+4i) - 1)/2) computed in integers so large indices do not round the wrong way.
    k = (isqrt(1 + 4 * index) - 1) // 2
    n = 2 * k + 1
    return 2 * (index - k * k - k) - n, n


def zernike_radial(n: int, m: int, rho) -> np.ndarray:
    """Radial polynomial ``R_n^|m|(ρ) = Σ_l (−1)^l (n−l)! / (l! ((n+|m|)/2−l)! ((n−|m|)/2−l)!) ρ^(n−2l)``.

    Zero when ``n − |m|`` is odd. ``rho`` any shape, returned float64 of the same shape.
    """
    m = abs(int(m))
    n = int(n)
    rho = np.asarray(rho, dtype=np.float64)
    out = np.zeros_like(rho)
    if (n - m) % 2 or m > n:
        return out
    for l in range((n - m) // 2 + 1):
        c = (-1) ** l * factorial(n - l) / (factorial(l) * factorial((n + m) // 2 - l) * factorial((n - m) // 2 - l))
        out += c * rho ** (n - 2 * l)
    return out


def zernike_cartesian(m: int, n: int, kx, ky) -> np.ndarray:
    """``Z_n^m`` at Cartesian frequencies (Å⁻¹): ``R_n^|m|(|k|)·cos(mφ)`` or ``·sin(|m|φ)`` for ``m < 0``.

    ``kx``, ``ky`` broadcastable arrays; returns float64 of the broadcast shape.
    """
    kx, ky = np.broadcast_arrays(np.asarray(kx, np.float64), np.asarray(ky, np.float64))
    rho = np.hypot(kx, ky)
    phi = np.arctan2(ky, kx)
    radial = zernike_radial(n, m, rho)
    return radial * (np.cos(m * phi) if m >= 0 else np.sin(-m * phi))


def _phase(box_px, pixel_size_angst, coefficients, index_to_mn) -> np.ndarray:
    ky, kx = rfft_frequencies_2d(box_px, pixel_size_angst)
    out = np.zeros((int(box_px), int(box_px) // 2 + 1))
    for i, c in enumerate(np.asarray(coefficients, dtype=np.float64).ravel()):
        if c != 0.0:
            m, n = index_to_mn(i)
            out += c * zernike_cartesian(m, n, kx, ky)
    return out


def zernike_even_phase_rfft_2d(box_px: int, pixel_size_angst: float, coefficients) -> np.ndarray:
    """Symmetric aberration phase ``γ_sym = Σ c_i Z_even,i`` on the 2D half grid.

    Parameters
    ----------
    box_px, pixel_size_angst
        Grid (RELION uses the output box and ``pix·bin``).
    coefficients
        ``(n_coeff,)`` ``rlnEvenZernike`` (radians); may be empty.

    Returns
    -------
    phase
        float64 ``(box, box//2+1)`` = (ky, kx), radians, added to γ.
    """
    return _phase(box_px, pixel_size_angst, coefficients, even_index_to_mn)


def zernike_odd_phase_rfft_2d(box_px: int, pixel_size_angst: float, coefficients) -> np.ndarray:
    """Antisymmetric aberration phase ``φ_odd = Σ c_i Z_odd,i`` on the 2D half grid.

    Observations are corrected by ``X ← X·exp(−i·φ_odd)``.

    Returns
    -------
    phase
        float64 ``(box, box//2+1)`` = (ky, kx), radians.
    """
    return _phase(box_px, pixel_size_angst, coefficients, odd_index_to_mn)
