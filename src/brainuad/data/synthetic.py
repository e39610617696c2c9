"""Synthetic anomalies for self-supervised anomaly segmentation: DRAEM, PII and FPI (2D slices and 3D volumes).

Everything runs in torch on the device of the input image, and every random draw goes through a
``torch.Generator``: the same generator state reproduces the same anomalies (on the same device).

* :func:`perlin_noise` -- classic gradient (Perlin) noise on a lattice with ``scale`` cells per axis.
* :func:`draem_anomaly` -- DRAEM anomalies (Zavrtanik et al., ICCV 2021), as SADM uses them for Stage II
  training and for the synthetic evaluation set (thesis P8.6-AppC, method-spec §4.7): a Perlin mask,
  three random intensity augmentations, blended with opacity ``gamma``.
* :func:`pii_anomaly` -- Poisson image interpolation (Tan et al., MICCAI 2021): a patch of a foreign image
  is blended in the gradient domain with interpolation factor ``alpha``; target = ``alpha`` on the patch.
* :func:`fpi_anomaly` -- foreign patch interpolation (Tan et al., MELBA 2022): the same patch is blended
  linearly, ``(1 - alpha) x + alpha x_foreign``; target = ``alpha`` on the patch.

Array conventions: images (B, C, H, W) or (B, C, D, H, W) float with intensities in [0, 1] (the
pre-processing normalises to [0, 1]); brain masks (B, 1, *spatial) bool (or 0/1). Anomalies are restricted
to the brain mask.

Ranges the thesis leaves open (method-spec §4.7 "not stated", §9 C15) and what this module uses
----------------------------------------------------------------------------------------------------------
The thesis states: Perlin mask binarised at a *uniformly sampled threshold*, three augmentations from
{posterize, sharpness, solarize, equalize, brightness change, colour change, auto-contrast}, opacity
``gamma ~ U[0.2, 1.0]``. Everything else is a documented choice (keyword arguments of
:func:`draem_anomaly`, reachable from the config ``synthetic`` section, config/README.md):

* Perlin lattice: ``2**k`` cells per axis, ``k`` drawn independently per axis from
  ``scale_exponents = (0, 6)`` (inclusive), capped at the axis length -- as DRAEM's and the author's
  augmenter (peers.md §1.5: ``perlin_scale`` 2^0..2^6).
* 2D noise is rotated by an angle ``~ U[-90, 90]`` degrees (kornia ``rotate``), as the author's augmenter;
  3D noise is not rotated (the per-axis lattice already gives anisotropic blobs).
* Threshold: ``~ U[threshold_range]`` on the noise (scaled to [-1, 1]); default (0.3, 0.6) in 2D (measured mean
  mask area 5-6 % of a 96 x 96 field, median 4-5 %; DRAEM's fixed 0.5 gives 3.9 %) and (0.22, 0.44) in 3D
  (3D Perlin noise has std 0.22 against 0.30 in 2D; mean area 6.4 %, median 4.8 % of a 32 x 64 x 64 field). The thesis
  says "uniformly sampled threshold"; the author's code uses the fixed 0.5 (``threshold_range=(0.5, 0.5)``
  reproduces it). A mask that ends up
  empty inside the brain is redrawn (new lattice, angle and threshold), at most ``max_tries`` times; after
  that the sample stays anomaly-free (its mask is all False).
* Source of ``I_aug`` (§9 C15): ``source="image"`` (default) augments the image itself, the reading of
  DRAEM without an external texture set; ``source="noise"`` augments a fresh Perlin field mapped to
  [0, 1] (what the author's augmenter does when no texture folder is given, peers.md §1.5).
* Augmentation parameters (DRAEM's imgaug defaults, mapped to kornia on [0, 1] images): posterize
  ``bits ~ {1..7}``; sharpness ``factor ~ U[0, 2]`` (0 blurs, 1 keeps, 2 sharpens); solarize
  ``threshold ~ U[32/255, 128/255]``; equalize (histogram equalisation); brightness ``x * m + a`` with
  ``m ~ U[0.8, 1.2]``, ``a ~ U[-30/255, 30/255]``; contrast (the "colour change" of a single-channel
  image: gamma contrast ``x ** g``, ``g ~ U[0.5, 2]``); auto-contrast (stretch the ``c`` and ``1 - c``
  quantiles to [0, 1], ``c ~ U[0, 0.2]``, PIL's cutoff). Three distinct operations per sample, applied in a
  random order. Volumes: equalize, auto-contrast, posterize, solarize, brightness and contrast act on the
  whole volume (one histogram), sharpness slice by slice with one factor per volume.

PII and FPI (Tan et al.) choices
--------------------------------
* Patch: an axis-aligned ellipse (2D) / ellipsoid (3D) centred on a random brain voxel, semi-axes
  ``~ U[size_range] * axis length / 2`` per axis (``size_range = (0.1, 0.5)``), intersected with the brain
  mask. The papers use rectangular patches on natural images; the ellipse keeps the anomaly inside the brain.
* Foreign image: ``source`` if given, else the next image of the batch (``torch.roll`` by one); a batch of
  one uses its own left-right mirror image.
* ``alpha ~ U[alpha_range]`` per sample, ``alpha_range = (0.05, 1.0)`` (FPI draws U[0, 1]; 0.05 avoids
  labelling an invisible patch).
* PII guidance field ``v = (1 - alpha) grad x + alpha grad x_foreign`` (the interpolated gradients of the
  paper, without its mixed-gradient variant), solved with Dirichlet boundary ``x`` on the patch border by
  batched conjugate gradients (``cg_iterations``) on the 5-point (2D) / 7-point (3D) Laplacian.
* Target (per voxel): ``alpha`` inside the patch, 0 elsewhere, for both methods (the "interpolation
  factor" regression target of FPI; PII's label is the same factor). The result is not clipped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

#: the augmentations :func:`draem_anomaly` draws from (P8.6-AppC; "colour change" = ``contrast``)
AUGMENTATIONS = ("posterize", "sharpness", "solarize", "equalize", "brightness", "contrast", "autocontrast")
#: default Perlin threshold ranges by field dimension (2D: about DRAEM's fixed 0.5 and 5 % mask area; 3D: the
#: 2D range times 0.73, the ratio of the fields' standard deviations 0.22 / 0.30, for a similar area)
THRESHOLD_RANGES = {2: (0.3, 0.6), 3: (0.22, 0.44)}
#: anomaly kinds of the synthetic data set (:func:`make_anomaly`)
KINDS = ("draem", "pii", "fpi")


# ----------------------------------------------------------------------------------------------- random
def _device(generator: torch.Generator | None, device) -> torch.device:
    if device is not None:
        return torch.device(device)
    return generator.device if generator is not None else torch.device("cpu")


def _uniform(shape, generator, device, low: float = 0.0, high: float = 1.0) -> torch.Tensor:
    """U[low, high) float32 of ``shape``, drawn on the generator's device, returned on ``device``."""
    draw = generator.device if generator is not None else device
    u = torch.rand(shape, generator=generator, device=draw).to(device)
    return low + (high - low) * u


def _randint(low: int, high: int, generator, device) -> int:
    """One integer in [low, high] (inclusive), as a Python int."""
    draw = generator.device if generator is not None else device
    return int(torch.randint(int(low), int(high) + 1, (1,), generator=generator, device=draw).item())


def _scalar(low: float, high: float, generator, device) -> float:
    return float(_uniform((1,), generator, device, low, high).item())


def _check(image: torch.Tensor, brain_mask: torch.Tensor) -> tuple[torch.Tensor, int]:
    if image.dim() not in (4, 5):
        raise ValueError(f"image must be (B, C, H, W) or (B, C, D, H, W), got shape {tuple(image.shape)}")
    if brain_mask.shape != (image.shape[0], 1, *image.shape[2:]):
        raise ValueError(f"brain_mask must be (B, 1, *spatial) = {(image.shape[0], 1, *image.shape[2:])}, "
                         f"got {tuple(brain_mask.shape)}")
    return brain_mask.to(device=image.device).bool(), image.dim() - 2


# ------------------------------------------------------------------------------------------------ Perlin
def _fade(t: torch.Tensor) -> torch.Tensor:
    return t * t * t * (t * (t * 6.0 - 15.0) + 10.0)


def perlin_noise(shape: Sequence[int], scale: int | Sequence[int], generator: torch.Generator | None = None,
                 device=None, *, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Classic gradient (Perlin 1985/2002) noise on one 2D or 3D field.

    Parameters
    ----------
    shape : (H, W) or (D, H, W)
        Spatial shape of the field.
    scale : int or sequence of int
        Lattice cells per axis (one int for all axes, or one per axis), each >= 1. The field spans
        ``scale`` cells along an axis, i.e. a feature size of about ``shape / scale`` voxels.
    generator : torch.Generator, optional
        Source of the random gradients.
    device : torch.device or str, optional
        Output device (default: the generator's device, else CPU).
    dtype : torch.dtype

    Returns
    -------
    Tensor of ``shape``: zero on every lattice point, within [-1, 1] (the raw gradient noise, whose bound
    is sqrt(d)/2 for d axes, times 2/sqrt(d); in 2D this is the sqrt(2) factor of DRAEM's reference code).

    Notes
    -----
    Random unit gradient vectors on the (scale + 1)^d lattice points, dot products with the offset to each
    of the 2^d cell corners, blended with Perlin's quintic fade ``6t^5 - 15t^4 + 10t^3``. Unlike the
    reference implementation used by DRAEM the shape need not be a multiple of the scale.
    """
    shape = tuple(int(s) for s in shape)
    dims = len(shape)
    if dims not in (2, 3):
        raise ValueError(f"perlin_noise supports 2D and 3D fields, got shape {shape}")
    scales = (int(scale),) * dims if isinstance(scale, (int, float)) else tuple(int(s) for s in scale)
    if len(scales) != dims or min(scales) < 1:
        raise ValueError(f"scale must be >= 1 per axis ({dims} values), got {scale}")
    device = _device(generator, device)
    work = torch.float64 if dtype == torch.float64 else torch.float32
    lattice = tuple(s + 1 for s in scales)
    if dims == 2:
        angle = _uniform(lattice, generator, device, 0.0, 2.0 * math.pi).to(work)
        grads = torch.stack([torch.cos(angle), torch.sin(angle)], dim=-1)
    else:
        # uniform directions on the sphere: z ~ U[-1, 1], azimuth ~ U[0, 2 pi)
        z = _uniform(lattice, generator, device, -1.0, 1.0).to(work)
        phi = _uniform(lattice, generator, device, 0.0, 2.0 * math.pi).to(work)
        r = torch.sqrt((1.0 - z * z).clamp_min(0.0))
        grads = torch.stack([r * torch.cos(phi), r * torch.sin(phi), z], dim=-1)
    cells, fracs = [], []
    for a, (n, s) in enumerate(zip(shape, scales)):
        t = torch.arange(n, device=device, dtype=work) * (s / n)
        i = torch.floor(t).long().clamp_max(s - 1)
        view = [1] * dims
        view[a] = n
        cells.append(i.view(view))
        fracs.append((t - i.to(work)).view(view))
    total = torch.zeros(shape, device=device, dtype=work)
    for corner in range(2 ** dims):
        offs = [(corner >> a) & 1 for a in range(dims)]
        idx = torch.broadcast_tensors(*[c + o for c, o in zip(cells, offs)])
        g = grads[idx]  # (*shape, dims)
        dot = sum(g[..., a] * (fracs[a] - offs[a]) for a in range(dims))
        weight = 1.0
        for a in range(dims):
            w = _fade(fracs[a])
            weight = weight * (w if offs[a] else 1.0 - w)
        total = total + weight * dot
    return (total * (2.0 / math.sqrt(dims))).to(dtype)


def _rotate2d(field: torch.Tensor, degrees: float) -> torch.Tensor:
    """Rotate a (H, W) field about its centre (bilinear, zeros outside; kornia)."""
    from kornia.geometry.transform import rotate

    angle = torch.tensor([degrees], device=field.device, dtype=field.dtype)
    return rotate(field[None, None], angle)[0, 0]


# ----------------------------------------------------------------------------------------- augmentations
def _as_images(x: torch.Tensor) -> torch.Tensor:
    """(C, *spatial) -> one 2D image (1, C, H', W): a volume's slices are stacked along H."""
    return x.reshape(x.shape[0], -1, x.shape[-1])[None]


def _autocontrast(img: torch.Tensor, cutoff: float) -> torch.Tensor:
    """Map the ``cutoff`` and ``1 - cutoff`` quantiles of every channel to 0 and 1, clip (PIL's cutoff)."""
    flat = img.reshape(img.shape[0], img.shape[1], -1)
    lo = torch.quantile(flat, cutoff, dim=-1, keepdim=True) if cutoff > 0 else flat.amin(-1, keepdim=True)
    hi = torch.quantile(flat, 1.0 - cutoff, dim=-1, keepdim=True) if cutoff > 0 else flat.amax(-1, keepdim=True)
    span = hi - lo
    out = torch.where(span > 1e-8, (flat - lo) / span.clamp_min(1e-8), flat)
    return out.clamp(0.0, 1.0).reshape(img.shape)


def apply_augmentation(x: torch.Tensor, op: str, generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict]:
    """Apply one DRAEM intensity augmentation with randomly drawn strength.

    Parameters
    ----------
    x : Tensor (C, H, W) or (C, D, H, W)
        One image with intensities in [0, 1] (clipped to [0, 1] first).
    op : one of :data:`AUGMENTATIONS`
    generator : torch.Generator, optional

    Returns
    -------
    (Tensor of x's shape in [0, 1], dict of the drawn parameters)
    """
    import kornia.enhance as K

    if op not in AUGMENTATIONS:
        raise ValueError(f"unknown augmentation {op!r}; expected one of {AUGMENTATIONS}")
    device = x.device
    x = x.float().clamp(0.0, 1.0)
    img = _as_images(x)
    if op == "posterize":
        bits = _randint(1, 7, generator, device)
        out, params = K.posterize(img, bits), {"bits": bits}
    elif op == "sharpness":
        factor = _scalar(0.0, 2.0, generator, device)
        slices = x[None] if x.dim() == 3 else x.transpose(0, 1)  # (S, C, H, W)
        sharp = K.sharpness(slices, factor)
        return (sharp[0] if x.dim() == 3 else sharp.transpose(0, 1)).clamp(0, 1), {"factor": factor}
    elif op == "solarize":
        thr = _scalar(32 / 255, 128 / 255, generator, device)
        out, params = K.solarize(img, thr), {"threshold": thr}
    elif op == "equalize":
        out, params = K.equalize(img), {}
    elif op == "brightness":
        mul = _scalar(0.8, 1.2, generator, device)
        add = _scalar(-30 / 255, 30 / 255, generator, device)
        out, params = K.adjust_brightness(K.adjust_contrast(img, mul), add), {"multiply": mul, "add": add}
    elif op == "contrast":
        g = _scalar(0.5, 2.0, generator, device)
        out, params = K.adjust_gamma(img, g), {"gamma": g}
    else:  # autocontrast
        c = _scalar(0.0, 0.2, generator, device)
        out, params = _autocontrast(img, c), {"cutoff": c}
    return out[0].reshape(x.shape).clamp(0.0, 1.0), params


def blend(image: torch.Tensor, mask: torch.Tensor, augmented: torch.Tensor, gamma) -> torch.Tensor:
    """DRAEM blend ``I_syn = (1 - M) I + (1 - gamma) (M I) + gamma (M I_aug)`` (P8.6-AppC).

    Parameters
    ----------
    image, augmented : Tensor (B, C, *spatial)
    mask : Tensor (B, 1, *spatial) bool or 0/1
    gamma : float or Tensor (B,)
        Opacity of the anomaly (0 = invisible, 1 = the augmented image replaces the image inside M).

    Returns
    -------
    Tensor (B, C, *spatial) of image's dtype.
    """
    m = mask.to(image.dtype)
    g = torch.as_tensor(gamma, dtype=image.dtype, device=image.device)
    if g.dim() == 1:
        g = g.view(-1, *([1] * (image.dim() - 1)))
    return (1 - m) * image + (1 - g) * (m * image) + g * (m * augmented.to(image.dtype))


# ------------------------------------------------------------------------------------------------- DRAEM
def draem_mask(brain_mask: torch.Tensor, generator: torch.Generator | None = None, *,
               scale_exponents: tuple[int, int] = (0, 6), threshold_range: tuple[float, float] | None = None,
               rotate: bool = True, max_tries: int = 10) -> tuple[torch.Tensor, dict]:
    """One Perlin anomaly mask inside a brain mask (see the module docstring for the ranges).

    Parameters
    ----------
    brain_mask : Tensor (*spatial) bool, 2D or 3D

    Returns
    -------
    (Tensor (*spatial) bool, dict with ``scale``, ``threshold``, ``angle``, ``tries``)
    """
    shape, device = tuple(brain_mask.shape), brain_mask.device
    if threshold_range is None:
        threshold_range = THRESHOLD_RANGES[len(shape)]
    params: dict = {}
    mask = torch.zeros(shape, dtype=torch.bool, device=device)
    for attempt in range(1, max_tries + 1):
        scale = tuple(min(2 ** _randint(scale_exponents[0], scale_exponents[1], generator, device), n)
                      for n in shape)
        noise = perlin_noise(shape, scale, generator, device)
        angle = _scalar(-90.0, 90.0, generator, device) if rotate and len(shape) == 2 else 0.0
        if angle:
            noise = _rotate2d(noise, angle)
        thr = _scalar(threshold_range[0], threshold_range[1], generator, device)
        mask = (noise > thr) & brain_mask
        params = {"scale": scale, "threshold": thr, "angle": angle, "tries": attempt}
        if bool(mask.any()) or not bool(brain_mask.any()):
            break
    return mask, params


def draem_anomaly(image: torch.Tensor, brain_mask: torch.Tensor, generator: torch.Generator | None = None, *,
                  gamma_range: tuple[float, float] = (0.2, 1.0), threshold_range: tuple[float, float] | None = None,
                  scale_exponents: tuple[int, int] = (0, 6), augmentations: Sequence[str] = AUGMENTATIONS,
                  n_augmentations: int = 3, source: str = "image", rotate: bool = True, max_tries: int = 10,
                  p_anomaly: float = 1.0, return_details: bool = False):
    """DRAEM synthetic anomalies (Zavrtanik et al. 2021) as SADM uses them (P8.6-AppC, method-spec §4.7).

    Parameters
    ----------
    image : Tensor (B, C, H, W) or (B, C, D, H, W)
        Float images with intensities in [0, 1].
    brain_mask : Tensor (B, 1, *spatial) bool
        Anomalies are drawn inside it.
    generator : torch.Generator, optional
        Every random draw; the same state gives the same anomalies.
    gamma_range : (low, high)
        Opacity ``gamma ~ U[low, high]`` per sample (thesis: [0.2, 1.0]).
    threshold_range, scale_exponents, rotate, max_tries :
        Perlin mask (:func:`draem_mask`; module docstring); ``threshold_range`` None = :data:`THRESHOLD_RANGES`
        of the image's dimension.
    augmentations : subset of :data:`AUGMENTATIONS`
    n_augmentations : int
        Distinct augmentations per sample (thesis: 3), applied in the drawn order.
    source : {"image", "noise"}
        What is augmented into ``I_aug``: the image itself, or a fresh Perlin field (author's code).
    p_anomaly : float
        Probability that a sample gets an anomaly (DRAEM's anomaly probability; 1 = always).
    return_details : bool
        Also return a dict with ``augmented`` (the ``I_aug`` tensor, B x C x spatial), ``gamma`` (B,),
        and per sample ``ops`` and ``mask_params``.

    Returns
    -------
    image_syn : Tensor (B, C, *spatial), image's dtype
        ``(1 - M) I + (1 - gamma) (M I) + gamma (M I_aug)``.
    mask : Tensor (B, 1, *spatial) bool
        The anomaly mask M (inside the brain mask).
    details : dict, only with ``return_details``
    """
    brain, dims = _check(image, brain_mask)
    unknown = [a for a in augmentations if a not in AUGMENTATIONS]
    if unknown or not 1 <= n_augmentations <= len(augmentations):
        raise ValueError(f"augmentations must be {n_augmentations} or more of {AUGMENTATIONS}, got {augmentations}")
    if source not in ("image", "noise"):
        raise ValueError(f"source must be 'image' or 'noise', got {source!r}")
    device = image.device
    b = image.shape[0]
    masks = torch.zeros_like(brain)
    augmented = image.detach().clone().float()
    gammas = _uniform((b,), generator, device, gamma_range[0], gamma_range[1])
    ops_all, params_all = [], []
    for i in range(b):
        if p_anomaly < 1.0 and _scalar(0.0, 1.0, generator, device) >= p_anomaly:
            ops_all.append([])
            params_all.append({})
            continue
        mask, mparams = draem_mask(brain[i, 0], generator, scale_exponents=scale_exponents,
                                   threshold_range=threshold_range, rotate=rotate, max_tries=max_tries)
        masks[i, 0] = mask
        if source == "image":
            src = image[i].float()
        else:
            spatial = tuple(image.shape[2:])
            scale = tuple(min(2 ** _randint(scale_exponents[0], scale_exponents[1], generator, device), n)
                          for n in spatial)
            field = perlin_noise(spatial, scale, generator, device)
            src = ((field + 1.0) / 2.0).expand(image.shape[1], *spatial)
        order = torch.randperm(len(augmentations), generator=generator,
                               device=generator.device if generator is not None else device)
        ops = [augmentations[int(k)] for k in order[:n_augmentations].tolist()]
        out, applied = src, []
        for op in ops:
            out, p = apply_augmentation(out, op, generator)
            applied.append((op, p))
        augmented[i] = out
        ops_all.append(applied)
        params_all.append(mparams)
    syn = blend(image, masks, augmented.to(image.dtype), gammas)
    if return_details:
        return syn, masks, {"augmented": augmented, "gamma": gammas, "ops": ops_all, "mask_params": params_all}
    return syn, masks


# ------------------------------------------------------------------------------------------ PII and FPI
def random_patch(brain: torch.Tensor, generator: torch.Generator | None = None, *,
                 size_range: tuple[float, float] = (0.1, 0.5)) -> torch.Tensor:
    """An ellipse / ellipsoid centred on a random brain voxel, intersected with the brain.

    Parameters
    ----------
    brain : Tensor (*spatial) bool
    size_range : (low, high)
        Semi-axis per axis ``~ U[low, high] * axis length / 2``.

    Returns
    -------
    Tensor (*spatial) bool (empty when the brain mask is empty).
    """
    shape, device = tuple(brain.shape), brain.device
    voxels = brain.nonzero()
    if voxels.shape[0] == 0:
        return torch.zeros(shape, dtype=torch.bool, device=device)
    k = _randint(0, voxels.shape[0] - 1, generator, device)
    centre = voxels[k].float()
    radii = _uniform((len(shape),), generator, device, size_range[0], size_range[1]) * \
        torch.tensor(shape, device=device, dtype=torch.float32) / 2
    radii = radii.clamp_min(1.0)
    grids = torch.meshgrid(*[torch.arange(n, device=device, dtype=torch.float32) for n in shape], indexing="ij")
    r2 = sum(((g - centre[a]) / radii[a]) ** 2 for a, g in enumerate(grids))
    return (r2 <= 1.0) & brain


def _foreign(image: torch.Tensor, source: torch.Tensor | None) -> torch.Tensor:
    if source is not None:
        if source.shape != image.shape:
            raise ValueError(f"source must have the image's shape {tuple(image.shape)}, got {tuple(source.shape)}")
        return source.to(device=image.device, dtype=image.dtype)
    if image.shape[0] == 1:
        return image.flip(-1)
    return image.roll(1, dims=0)


def _patches(brain, generator, size_range, alpha_range):
    b = brain.shape[0]
    patches = torch.zeros_like(brain)
    for i in range(b):
        patches[i, 0] = random_patch(brain[i, 0], generator, size_range=size_range)
    alphas = _uniform((b,), generator, brain.device, alpha_range[0], alpha_range[1])
    return patches, alphas


def fpi_anomaly(image: torch.Tensor, brain_mask: torch.Tensor, generator: torch.Generator | None = None, *,
                source: torch.Tensor | None = None, alpha_range: tuple[float, float] = (0.05, 1.0),
                size_range: tuple[float, float] = (0.1, 0.5)) -> tuple[torch.Tensor, torch.Tensor]:
    """Foreign patch interpolation (Tan et al., MELBA 2022).

    Parameters
    ----------
    image : Tensor (B, C, *spatial)
    brain_mask : Tensor (B, 1, *spatial) bool
    generator : torch.Generator, optional
    source : Tensor (B, C, *spatial), optional
        Foreign images (default: the batch rolled by one; a single image uses its mirror image).
    alpha_range, size_range :
        Interpolation factor per sample and patch size (module docstring).

    Returns
    -------
    image_syn : Tensor (B, C, *spatial)
        ``(1 - alpha P) x + alpha P x_foreign``.
    target : Tensor (B, 1, *spatial) float32
        ``alpha`` on the patch P, 0 elsewhere.
    """
    brain, _ = _check(image, brain_mask)
    foreign = _foreign(image, source)
    patches, alphas = _patches(brain, generator, size_range, alpha_range)
    target = patches.float() * alphas.view(-1, *([1] * (image.dim() - 1)))
    t = target.to(image.dtype)
    return (1 - t) * image + t * foreign, target


def laplacian(x: torch.Tensor, padding: str = "zeros") -> torch.Tensor:
    """5-point (2D) / 7-point (3D) Laplacian of (N, 1, *spatial), ``zeros`` or ``replicate`` boundary."""
    dims = x.dim() - 2
    kernel = torch.zeros((3,) * dims, dtype=x.dtype, device=x.device)
    centre = (1,) * dims
    kernel[centre] = -2.0 * dims
    for a in range(dims):
        for o in (0, 2):
            idx = list(centre)
            idx[a] = o
            kernel[tuple(idx)] = 1.0
    pad = [1] * (2 * dims)
    xp = F.pad(x, pad, mode="constant" if padding == "zeros" else "replicate")
    conv = F.conv2d if dims == 2 else F.conv3d
    return conv(xp, kernel[None, None])


def poisson_blend(target: torch.Tensor, source: torch.Tensor, region: torch.Tensor, alpha: torch.Tensor, *,
                  iterations: int = 300, tol: float = 1e-6) -> torch.Tensor:
    """Solve the PII Poisson problem: inside ``region`` find f with Laplacian(f) = div(v),
    ``v = (1 - alpha) grad target + alpha grad source``, and f = target outside the region.

    With ``f = target + u`` this is ``Lap(u) = alpha Lap(source - target)`` on the region, ``u = 0`` outside;
    solved by batched conjugate gradients on ``-Lap`` (symmetric positive definite on the region).

    Parameters
    ----------
    target, source : Tensor (N, 1, *spatial)
    region : Tensor (N, 1, *spatial) bool
    alpha : Tensor (N,)
    iterations, tol :
        Conjugate-gradient iterations (at most) and relative residual at which a sample stops.

    Returns
    -------
    Tensor (N, 1, *spatial): f.
    """
    work = torch.float64 if target.dtype == torch.float64 else torch.float32
    m = region.to(work)
    view = (-1,) + (1,) * (target.dim() - 1)
    rhs = -alpha.to(work).view(view) * laplacian((source - target).to(work), "replicate") * m

    def op(u):
        return -laplacian(u * m) * m

    u = torch.zeros_like(rhs)
    r = rhs.clone()
    p = r.clone()
    axes = tuple(range(1, rhs.dim()))
    rs = (r * r).sum(axes)
    stop = rs.sqrt() * tol
    for _ in range(iterations):
        active = rs.sqrt() > stop
        if not bool(active.any()):
            break
        ap = op(p)
        denom = (p * ap).sum(axes)
        step = torch.where(active & (denom > 0), rs / denom.clamp_min(1e-30), torch.zeros_like(rs))
        u = u + step.view(view) * p
        r = r - step.view(view) * ap
        rs_new = (r * r).sum(axes)
        beta = torch.where(rs > 0, rs_new / rs.clamp_min(1e-30), torch.zeros_like(rs))
        p = r + beta.view(view) * p
        rs = rs_new
    return (target.to(work) + u * m).to(target.dtype)


def pii_anomaly(image: torch.Tensor, brain_mask: torch.Tensor, generator: torch.Generator | None = None, *,
                source: torch.Tensor | None = None, alpha_range: tuple[float, float] = (0.05, 1.0),
                size_range: tuple[float, float] = (0.1, 0.5), cg_iterations: int = 300
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Poisson image interpolation (Tan et al., MICCAI 2021).

    Parameters
    ----------
    image : Tensor (B, C, *spatial)
    brain_mask : Tensor (B, 1, *spatial) bool
    generator : torch.Generator, optional
    source : Tensor (B, C, *spatial), optional
        Foreign images (default: the batch rolled by one; a single image uses its mirror image).
    alpha_range, size_range :
        Interpolation factor per sample and patch size (module docstring).
    cg_iterations : int
        Conjugate-gradient iterations of :func:`poisson_blend`.

    Returns
    -------
    image_syn : Tensor (B, C, *spatial)
        The Poisson-blended image (each channel solved separately).
    target : Tensor (B, 1, *spatial) float32
        ``alpha`` on the patch, 0 elsewhere.
    """
    brain, _ = _check(image, brain_mask)
    foreign = _foreign(image, source)
    patches, alphas = _patches(brain, generator, size_range, alpha_range)
    b, c = image.shape[:2]
    spatial = image.shape[2:]
    flat = lambda t: t.reshape(b * c, 1, *spatial)  # noqa: E731
    region = patches.expand(b, c, *spatial)
    out = poisson_blend(flat(image), flat(foreign), flat(region), alphas.repeat_interleave(c),
                        iterations=cg_iterations)
    target = patches.float() * alphas.view(-1, *([1] * (image.dim() - 1)))
    return out.reshape(image.shape), target


def make_anomaly(kind: str, image: torch.Tensor, brain_mask: torch.Tensor,
                 generator: torch.Generator | None = None, **options) -> tuple[torch.Tensor, torch.Tensor]:
    """Dispatch to :func:`draem_anomaly`, :func:`pii_anomaly` or :func:`fpi_anomaly` by name.

    Returns
    -------
    (image_syn (B, C, *spatial), target (B, 1, *spatial)): the DRAEM mask as bool, the PII/FPI
    interpolation factor as float32.
    """
    funcs = {"draem": draem_anomaly, "pii": pii_anomaly, "fpi": fpi_anomaly}
    if kind not in funcs:
        raise ValueError(f"unknown synthetic anomaly kind {kind!r}; expected one of {KINDS}")
    return funcs[kind](image, brain_mask, generator, **options)
