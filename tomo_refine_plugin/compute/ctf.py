"""RELION's CTF on the 2D FFTW half grid (``CTF::initialise``, ``CTF::getCTF``, ``CTF::draw``).

Formula (all lengths in Å, frequencies in Å⁻¹)::

    λ  = 12.2643247 / √(V·(1 + 0.978466e-6·V)),  V = kV·1000        (relativistic)
    K1 = π·λ,  K2 = (π/2)·Cs·1e7·λ³,  K3 = atan(Q0/√(1−Q0²)),  K4 = −B/4,  K5 = φ·π/180
    γ(k) = −K1·(ΔfU·(k·u)² + ΔfV·(k·v)²) + K2·|k|⁴ − K5 − K3 + γ_sym(k)
    CTF(k) = −sin(γ)·exp(K4·|k|²)·scale,   |CTF| < 1e-8 → ±1e-8 (sign(0) = +1)

with ``u = (cos α, sin α)``, ``v = (−sin α, cos α)``, ``α = rlnDefocusAngle``; ``γ_sym`` is the even
Zernike sum (:mod:`.zernike`). RELION's sign makes the CTF **positive at low frequency** (``+Q0`` at
``k = 0``). Tomography CTFs never apply a magnification matrix and always take the B-factor branch.
Positive defocus is underfocus.

The depth-dependent defocus of a particle (``Tomogram::getDepthOffset``) is
``dz = hand · pix · defocus_slope · [R_f (p − c)]_z`` Å, added to both ΔfU and ΔfV
(:func:`defocus_offsets_angst`).
"""
from __future__ import annotations

import numpy as np

from ._ctf_kernels import ctf_rfft_2d_kernel
from .geometry import TiltSeriesGeometry, TiltSeriesOptics, depth_offsets_px
from .zernike import zernike_even_phase_rfft_2d

__all__ = [
    "electron_wavelength_angst",
    "ctf_rfft_2d",
    "ctf_rfft_2d_batch",
    "defocus_offsets_angst",
]


def electron_wavelength_angst(voltage_kv: float) -> float:
    """Relativistic electron wavelength ``12.2643247/√(V(1+0.978466e-6·V))`` Å, ``V`` in volts.

    0.019687 Å at 300 kV, 0.025079 Å at 200 kV.
    """
    v = float(voltage_kv) * 1e3
    if not v > 0:
        raise ValueError(f"voltage must be positive, got {voltage_kv} kV")
    return 12.2643247 / np.sqrt(v * (1.0 + 0.978466e-6 * v))


def _constants(voltage_kv, cs_mm, amplitude_contrast):
    lam = electron_wavelength_angst(voltage_kv)
    q0 = float(amplitude_contrast)
    if not 0.0 <= q0 < 1.0:
        raise ValueError(f"amplitude contrast must be in [0, 1), got {amplitude_contrast}")
    k1 = np.pi * lam
    k2 = 0.5 * np.pi * float(cs_mm) * 1e7 * lam**3
    k3 = np.arctan(q0 / np.sqrt(1.0 - q0 * q0))
    return k1, k2, k3


def _run_kernel(box_px, pixel_size_angst, k1, k2, k3, du, dv, angle_deg, phase_deg, bfactor, scale, gamma_offset):
    box_px = int(box_px)
    if box_px < 2:
        raise ValueError(f"box must be at least 2 px, got {box_px}")
    n = du.shape[0]
    out = np.empty((n, box_px, box_px // 2 + 1), dtype=np.float32)
    use = gamma_offset is not None
    go = np.ascontiguousarray(gamma_offset, np.float64) if use else np.zeros((1, 1))
    f64 = lambda a: np.ascontiguousarray(a, dtype=np.float64)  # noqa: E731
    ctf_rfft_2d_kernel(
        f64(du), f64(dv), f64(np.deg2rad(angle_deg)), f64(np.deg2rad(phase_deg)), f64(bfactor), f64(scale),
        float(k1), float(k2), float(k3), box_px, float(pixel_size_angst), go, use, out,
    )
    return out


def ctf_rfft_2d(
    box_px: int,
    pixel_size_angst: float,
    voltage_kv: float,
    cs_mm: float,
    amplitude_contrast: float,
    defocus_u_angst: float,
    defocus_v_angst: float,
    defocus_angle_deg: float,
    phase_shift_deg: float = 0.0,
    bfactor_angst2: float = 0.0,
    scale: float = 1.0,
    even_zernike=None,
) -> np.ndarray:
    """One RELION CTF on the FFTW half grid of a ``box_px`` box.

    Parameters
    ----------
    even_zernike
        ``(n_coeff,)`` ``rlnEvenZernike`` coefficients or None; evaluated at ``pixel_size_angst``.

    Returns
    -------
    ctf
        float32 ``(box, box//2+1)`` = (ky, kx), ky in FFT order.
    """
    k1, k2, k3 = _constants(voltage_kv, cs_mm, amplitude_contrast)
    one = lambda v: np.array([float(v)])  # noqa: E731
    gamma = None
    if even_zernike is not None and np.any(np.asarray(even_zernike) != 0):
        gamma = zernike_even_phase_rfft_2d(box_px, pixel_size_angst, even_zernike)
    return _run_kernel(
        box_px, pixel_size_angst, k1, k2, k3, one(defocus_u_angst), one(defocus_v_angst), one(defocus_angle_deg),
        one(phase_shift_deg), one(bfactor_angst2), one(scale), gamma,
    )[0]


def ctf_rfft_2d_batch(
    box_px: int,
    pixel_size_angst: float,
    optics: TiltSeriesOptics,
    tilt_indices,
    extra_defocus_angst,
    zernike_pixel_size_angst: float | None = None,
) -> np.ndarray:
    """Many per-tilt CTFs of one tilt series, each with its own extra defocus (particle depth).

    Parameters
    ----------
    box_px
        Output box (RELION: ``--b``).
    pixel_size_angst
        Pixel size of that box (RELION: tilt-series pixel × bin).
    optics
        The tilt series' :class:`~.geometry.TiltSeriesOptics`.
    tilt_indices
        int, any shape ``S`` (e.g. ``(n_particles, n_tilts)``): the tilt row of each CTF.
    extra_defocus_angst
        float, shape ``S``: added to both ΔfU and ΔfV (:func:`defocus_offsets_angst`).
    zernike_pixel_size_angst
        Pixel size at which the even Zernike phase is evaluated (RELION: optics group 0's pixel × bin);
        defaults to ``pixel_size_angst``.

    Returns
    -------
    ctf
        float32 ``S + (box, box//2+1)``.
    """
    idx = np.asarray(tilt_indices)
    extra = np.broadcast_to(np.asarray(extra_defocus_angst, dtype=np.float64), idx.shape)
    if idx.size and (idx.min() < 0 or idx.max() >= optics.n_tilts):
        raise ValueError(f"tilt indices must be in [0, {optics.n_tilts}), got [{idx.min()}, {idx.max()}]")
    flat = idx.ravel().astype(np.int64)
    ex = extra.ravel()
    k1, k2, k3 = _constants(optics.voltage_kv, optics.cs_mm, optics.amplitude_contrast)
    gamma = None
    if optics.even_zernike.size and np.any(optics.even_zernike != 0):
        zpix = pixel_size_angst if zernike_pixel_size_angst is None else zernike_pixel_size_angst
        gamma = zernike_even_phase_rfft_2d(box_px, zpix, optics.even_zernike)
    out = _run_kernel(
        box_px, pixel_size_angst, k1, k2, k3,
        optics.defocus_u_angst[flat] + ex, optics.defocus_v_angst[flat] + ex, optics.defocus_angle_deg[flat],
        optics.phase_shift_deg[flat], optics.ctf_bfactor_angst2[flat], optics.ctf_scale[flat], gamma,
    )
    return out.reshape(idx.shape + out.shape[1:])


def defocus_offsets_angst(geometry: TiltSeriesGeometry, positions_px) -> np.ndarray:
    """Depth-dependent defocus change ``hand · pix · defocus_slope · [R_f (p − c)]_z`` (Å).

    Parameters
    ----------
    geometry
        The tilt series (projection matrices, ``hand``, ``defocus_slope``, pixel size).
    positions_px
        ``(n_particles, 3)`` static positions (offsets applied, no motion) in decentred px.

    Returns
    -------
    dz
        float64 ``(n_particles, n_tilts)``, to add to both ΔfU and ΔfV.
    """
    depth = depth_offsets_px(geometry.projection_matrices(), positions_px, geometry.centre_px)
    return geometry.hand * geometry.pixel_size_angst * geometry.defocus_slope * depth
