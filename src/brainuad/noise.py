"""Noise fields for the diffusion models: fractal simplex noise (2D and 3D) and Gaussian noise.

Everything is computed in torch on the requested device (no CPU round trip, no per-pixel Python
loops) and every random draw goes through a ``torch.Generator``, so a seeded generator reproduces
the same fields.

:func:`make_noise` is what the models call (``noise`` hparam: ``gaussian``, ``simplex``, ``simplex3d``;
the keys are in config/README.md, "models"). :func:`fractal_simplex` documents the fractal sum, its
differences to the author's public code and the measured statistics of the fields.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

KINDS = ("gaussian", "simplex", "simplex3d")

# Calibrated amplitudes (see module docstring). Gustavson's constants are 70 (2D) and 32 (3D), which
# put a single octave into about [-1, 1]; the factors bring the pooled std of the default fractal
# field to the 0.59 measured for the reference OpenSimplex algorithm (peers §1.0).
SIMPLEX2_SCALE = 70.0 * 0.836
SIMPLEX3_SCALE = 32.0 * 0.87
# Coordinates are multiplied by this before the lattice look-up. Gustavson's simplex lattice has
# points sqrt(2/3) apart in input units, OpenSimplex's (the reference) sqrt(2) apart; scaling by
# 1/sqrt(3) gives both the same feature size for the same ``frequency``.
LATTICE_SCALE = 1.0 / math.sqrt(3.0)

_F2 = 0.5 * (math.sqrt(3.0) - 1.0)
_G2 = (3.0 - math.sqrt(3.0)) / 6.0
_F3 = 1.0 / 3.0
_G3 = 1.0 / 6.0

# The 12 edge midpoints of a cube (Gustavson's grad3); the 2D variant uses the first two components.
_GRAD3 = (
    (1, 1, 0), (-1, 1, 0), (1, -1, 0), (-1, -1, 0),
    (1, 0, 1), (-1, 0, 1), (1, 0, -1), (-1, 0, -1),
    (0, 1, 1), (0, -1, 1), (0, 1, -1), (0, -1, -1),
)


def _draw_device(generator: torch.Generator | None, device: torch.device) -> torch.device:
    """Device random numbers must be drawn on: the generator's (torch requires it) or ``device``."""
    return generator.device if generator is not None else device


def _rand(shape, generator, device) -> torch.Tensor:
    """Uniform [0, 1) float32 of ``shape`` drawn with ``generator``, returned on ``device``."""
    return torch.rand(shape, generator=generator, device=_draw_device(generator, device)).to(device)


def _permutations(n: int, generator, device) -> torch.Tensor:
    """(n, 512) int64: a random permutation of 0..255 per sample, written twice (avoids wrap-around)."""
    perm = _rand((n, 256), generator, device).argsort(dim=1)
    return torch.cat([perm, perm], dim=1)


def _lookup(perm: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``perm[b, idx[b, ...]]`` for a per-sample table. perm (n, 512), idx (n, ...) -> (n, ...)."""
    return torch.gather(perm, 1, idx.reshape(idx.shape[0], -1)).reshape(idx.shape)


def simplex2d(x: torch.Tensor, y: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    """Single-octave 2D simplex noise at arbitrary coordinates.

    Parameters
    ----------
    x, y : Tensor (n, ...)
        Coordinates in lattice units (one unit = one simplex cell), broadcast to a common shape.
    perm : Tensor (n, 512) int64
        Per-sample permutation tables from :func:`_permutations`.

    Returns
    -------
    Tensor (n, ...) of x's dtype, within about [-0.85, 0.85] (amplitude :data:`SIMPLEX2_SCALE`).
    """
    x, y = torch.broadcast_tensors(x, y)
    grad = torch.tensor(_GRAD3, dtype=x.dtype, device=x.device)[:, :2]
    s = (x + y) * _F2
    i, j = torch.floor(x + s), torch.floor(y + s)
    t = (i + j) * _G2
    x0, y0 = x - (i - t), y - (j - t)
    i1 = (x0 > y0).to(x.dtype)  # lower (1, 0) or upper (0, 1) triangle of the skewed cell
    j1 = 1.0 - i1
    corners = ((x0, y0, 0, 0), (x0 - i1 + _G2, y0 - j1 + _G2, i1, j1),
               (x0 - 1.0 + 2.0 * _G2, y0 - 1.0 + 2.0 * _G2, 1, 1))
    ii, jj = i.long() & 255, j.long() & 255
    total = torch.zeros_like(x)
    for cx, cy, di, dj in corners:
        di = di.long() if torch.is_tensor(di) else di
        dj = dj.long() if torch.is_tensor(dj) else dj
        gi = _lookup(perm, ii + di + _lookup(perm, jj + dj)) % 12
        g = grad[gi]
        w = (0.5 - cx * cx - cy * cy).clamp_min(0.0)
        total = total + w.pow(4) * (g[..., 0] * cx + g[..., 1] * cy)
    return SIMPLEX2_SCALE * total


def simplex3d(x: torch.Tensor, y: torch.Tensor, z: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    """Single-octave 3D simplex noise at arbitrary coordinates.

    Parameters
    ----------
    x, y, z : Tensor (n, ...)
        Coordinates in lattice units, broadcast to a common shape.
    perm : Tensor (n, 512) int64
        Per-sample permutation tables.

    Returns
    -------
    Tensor (n, ...) of x's dtype (amplitude calibrated by :data:`SIMPLEX3_SCALE`).
    """
    x, y, z = torch.broadcast_tensors(x, y, z)
    grad = torch.tensor(_GRAD3, dtype=x.dtype, device=x.device)
    s = (x + y + z) * _F3
    i, j, k = torch.floor(x + s), torch.floor(y + s), torch.floor(z + s)
    t = (i + j + k) * _G3
    x0, y0, z0 = x - (i - t), y - (j - t), z - (k - t)
    # Which of the six tetrahedra of the skewed cube (ranking of x0, y0, z0).
    i1 = (x0 >= y0) & (x0 >= z0)
    j1 = (y0 > x0) & (y0 >= z0)
    k1 = (z0 > x0) & (z0 > y0)
    i2 = (x0 >= y0) | (x0 >= z0)
    j2 = (y0 > x0) | (y0 >= z0)
    k2 = (z0 > x0) | (z0 > y0)
    f = lambda b: b.to(x.dtype)  # noqa: E731
    corners = (
        (x0, y0, z0, 0, 0, 0),
        (x0 - f(i1) + _G3, y0 - f(j1) + _G3, z0 - f(k1) + _G3, i1.long(), j1.long(), k1.long()),
        (x0 - f(i2) + 2 * _G3, y0 - f(j2) + 2 * _G3, z0 - f(k2) + 2 * _G3, i2.long(), j2.long(), k2.long()),
        (x0 - 1 + 3 * _G3, y0 - 1 + 3 * _G3, z0 - 1 + 3 * _G3, 1, 1, 1),
    )
    ii, jj, kk = i.long() & 255, j.long() & 255, k.long() & 255
    total = torch.zeros_like(x)
    for cx, cy, cz, di, dj, dk in corners:
        gi = _lookup(perm, ii + di + _lookup(perm, jj + dj + _lookup(perm, kk + dk))) % 12
        g = grad[gi]
        w = (0.6 - cx * cx - cy * cy - cz * cz).clamp_min(0.0)
        total = total + w.pow(4) * (g[..., 0] * cx + g[..., 1] * cy + g[..., 2] * cz)
    return SIMPLEX3_SCALE * total


def fractal_simplex(shape: Sequence[int], generator: torch.Generator | None = None, device=None,
                    dtype: torch.dtype = torch.float32, *, dims: int = 2, octaves: int = 6,
                    persistence: float = 0.8, frequency: float = 64.0) -> torch.Tensor:
    """Fractal (multi-octave) simplex noise, one independent field per sample.

    Parameters
    ----------
    shape : sequence of int
        Output shape. The last ``dims`` axes span one field ((H, W) for ``dims=2``, (D, H, W) for
        ``dims=3``); every index of the leading axes (batch, channel) gets its own field.
    generator : torch.Generator, optional
        Source of the per-sample permutation tables and lattice offsets.
    device : torch.device or str, optional
        Output device (default: the generator's device, else CPU).
    dtype : torch.dtype
        Output dtype; computed in float32 (float64 when requested) and cast.
    dims : {2, 3}
    octaves : int
        Number of octaves (reference 6).
    persistence : float
        Amplitude factor between octaves (reference 0.8).
    frequency : float
        Lattice spacing of the first octave in pixels (reference 64); halved every octave.

    Returns
    -------
    Tensor of ``shape``, not normalised (statistics below).

    Notes
    -----
    The thesis replaces the Gaussian noise of the DDPM forward process by *structured simplex noise*
    (AnoDDPM, Wyatt et al. 2022; method-spec §3.1). Octaves, persistence and frequency are not stated in
    the thesis; the author's public code (method-spec App. B.1, peers §1.0) uses fractal OpenSimplex
    noise with **octaves = 6, persistence = 0.8, frequency = 64**, computed as::

        noise = sum_o persistence**o * simplex(col / (frequency / 2**o), row / (frequency / 2**o))

    i.e. ``frequency`` is a *length in pixels* (the lattice spacing of the first octave: 64 px, then 32,
    16, 8, 4, 2 px), independent of the image size, and the fractal sum is **not** normalised. This
    module implements the same fractal sum on top of classic 2D/3D simplex noise (Perlin 2001, in
    Gustavson's formulation: skewed simplex lattice, 12 gradient directions, radial kernel
    ``max(0, r2 - d^2)^4``), not on OpenSimplex; a random permutation table and a random lattice offset
    per sample replace the reference code's per-call random seed.

    Differences to the reference code (documented choices):

    * Simplex instead of OpenSimplex lattice. Coordinates are scaled by :data:`LATTICE_SCALE` so that
      lattice points are as far apart as OpenSimplex's for the same ``frequency`` (same feature size),
      and the single-octave amplitude is calibrated (:data:`SIMPLEX2_SCALE`, :data:`SIMPLEX3_SCALE`) so
      that the default fractal field on a 96 x 96 slice has the pooled standard deviation measured for
      the reference algorithm (peers §1.0: pooled std 0.59, per-field std 0.55 on average, 0.39 to 0.65).
    * Every sample gets its own field. The reference code repeats one field over the batch; the models
      in :mod:`brainuad.models.diffusion` do that through their ``noise_shared`` switch.
    * Computed in float32 (float64 on request) and cast to ``dtype``; the reference casts to float16.

    Measured statistics (``frequency=64, octaves=6, persistence=0.8``, 200 fields of 96 x 96, CPU):

    ============================  =========================  ===========================
    statistic                     ``normalise=False``        ``normalise=True``
    ============================  =========================  ===========================
    pooled mean                   0.007                      0 (exactly, per field)
    pooled std                    0.60                       1.00
    mean per-field std            0.58 (range 0.42 to 0.73)  1 (exactly, per field)
    mean |per-field mean|         0.12                       0
    max |value|                   2.4                        4.1
    ============================  =========================  ===========================

    A single octave has std 0.37 and stays within about [-0.85, 0.85]. ``simplex3d`` on 32 x 96 x 96
    volumes: pooled std 0.58, mean per-field std 0.56 (on (1, 96, 96) planes: 0.59 / 0.55). Because the
    first octave's lattice spans most of a 96 px slice, each field has a sizeable non-zero mean and a
    per-field std well below 1: at t = 500 the effective noise std is about 0.42 with the cosine schedule
    of the public code (sqrt(1 - abar) = 0.71; peers §1.0) and 0.57 with the linear schedule (0.96).
    ``normalise=True`` standardises every field to mean 0, std 1 so that the forward process
    ``sqrt(abar_t) x0 + sqrt(1 - abar_t) eps`` has the variance the DDPM derivation assumes.

    Spectrum: the fractal field concentrates its power at low spatial frequencies, unlike white Gaussian
    noise whose radially averaged power spectrum is flat. Measured on 16 standardised 64 x 64 fields: the
    mean power at radial frequencies below 0.08 cycles/px is about 560 times that above 0.3 cycles/px
    (white noise: 0.98).
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) < dims:
        raise ValueError(f"{dims}D simplex noise needs at least {dims} axes, got shape {shape}")
    device = torch.device(device) if device is not None else (
        generator.device if generator is not None else torch.device("cpu"))
    work = torch.float64 if dtype == torch.float64 else torch.float32
    lead, field = shape[: len(shape) - dims], shape[len(shape) - dims:]
    n = math.prod(lead)
    if n == 0 or math.prod(field) == 0:
        return torch.zeros(shape, device=device, dtype=dtype)
    perm = _permutations(n, generator, device)
    offsets = (_rand((octaves, n, dims), generator, device) * 256.0).to(work)
    axes = [torch.arange(s, device=device, dtype=work) for s in field]
    grids = torch.meshgrid(*axes, indexing="ij")  # each of field shape; order (D,) H, W
    noise = torch.zeros((n, *field), device=device, dtype=work)
    amplitude, freq = 1.0, float(frequency)
    for o in range(octaves):
        # coords[a]: (n, *field) lattice coordinate along field axis a (last axis = x)
        coords = [g.unsqueeze(0) * (LATTICE_SCALE / freq) + offsets[o, :, a].view(n, *([1] * dims))
                  for a, g in enumerate(grids)]
        if dims == 2:
            y, x = coords
            noise += amplitude * simplex2d(x, y, perm)
        else:
            z, y, x = coords
            noise += amplitude * simplex3d(x, y, z, perm)
        freq /= 2.0
        amplitude *= float(persistence)
    return noise.reshape(shape).to(dtype)


def standardise(noise: torch.Tensor, field_dims: int, eps: float = 1e-6) -> torch.Tensor:
    """Standardise every field (the last ``field_dims`` axes) to mean 0 and std 1.

    Parameters
    ----------
    noise : Tensor (..., *field)
    field_dims : int
        Number of trailing axes that form one field.

    Returns
    -------
    Tensor of noise's shape and dtype.
    """
    axes = tuple(range(noise.dim() - field_dims, noise.dim()))
    work = noise.float() if noise.dtype in (torch.float16, torch.bfloat16) else noise
    mean = work.mean(dim=axes, keepdim=True)
    std = work.std(dim=axes, keepdim=True, unbiased=False).clamp_min(eps)
    return ((work - mean) / std).to(noise.dtype)


def make_noise(kind: str, shape: Sequence[int], generator: torch.Generator | None = None, device=None,
               dtype: torch.dtype = torch.float32, *, octaves: int = 6, persistence: float = 0.8,
               frequency: float = 64.0, normalise: bool = False) -> torch.Tensor:
    """Draw a noise tensor for the diffusion forward process.

    Parameters
    ----------
    kind : {"gaussian", "simplex", "simplex3d"}
        ``"gaussian"``: i.i.d. N(0, 1) (``torch.randn``). ``"simplex"``: 2D fractal simplex noise, one
        field per (H, W) plane. ``"simplex3d"``: 3D fractal simplex noise, one field per trailing
        (D, H, W) block — for volumes (B, 1, D, H, W); on slices (B, 1, H, W) the trailing block is
        (1, H, W), i.e. a random planar cut through 3D noise (as AnoDDPM's ``rand_3d_fixed_T_octaves``).
    shape : sequence of int
        Output shape, e.g. (B, 1, H, W) or (B, 1, D, H, W).
    generator : torch.Generator, optional
        All randomness comes from it. Random numbers are drawn on the generator's device and moved
        to ``device`` if they differ; pass a generator on ``device`` to avoid the copy.
    device : torch.device or str, optional
        Output device (default: the generator's device, else CPU).
    dtype : torch.dtype
        Output dtype.
    octaves, persistence, frequency :
        Fractal parameters of the simplex kinds (see :func:`fractal_simplex`); ignored for Gaussian.
    normalise : bool
        Standardise every field to mean 0, std 1 (per sample: the trailing 2 axes for ``simplex``
        and ``gaussian``, 3 for ``simplex3d``). False = the reference code's behaviour.

    Returns
    -------
    Tensor of ``shape`` on ``device`` with ``dtype``.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown noise kind {kind!r}; expected one of {KINDS}")
    shape = tuple(int(s) for s in shape)
    device = torch.device(device) if device is not None else (
        generator.device if generator is not None else torch.device("cpu"))
    if kind == "gaussian":
        draw = dtype if dtype in (torch.float32, torch.float64) else torch.float32
        out = torch.randn(shape, generator=generator, device=_draw_device(generator, device), dtype=draw)
        out = out.to(device=device, dtype=dtype)
        field_dims = min(2, len(shape))
    else:
        dims = 2 if kind == "simplex" else 3
        out = fractal_simplex(shape, generator, device, dtype, dims=dims, octaves=int(octaves),
                              persistence=float(persistence), frequency=float(frequency))
        field_dims = dims
    if normalise:
        out = standardise(out, field_dims)
    return out
