"""Training-time intensity augmentation of the thesis code (cDDPM, P8.3 §4.4; method-spec §4.4 / §4.9).

P8.3 trains with TorchIO's ``RandomBlur(p=0.25)``, ``RandomBiasField(p=0.25)``, ``RandomGamma(p=0.5)``
and ``RandomGhosting(p=0.5)``; the public code (``aug_intensity: True``, ``get_augment`` in
``src/datamodules/create_dataset.py``) composes them in the order gamma -> bias field -> blur ->
ghosting, with TorchIO's default parameters, on the whole pre-processed volume (2 mm voxels) before
an axial slice is cut out.

Implementation choice
---------------------
TorchIO imports here, but its random transforms draw their parameters from torch's *global* RNG and
work one 3D subject at a time. This module is a **batched pure-torch re-implementation of the same
four transforms** whose random draws all come from the ``torch.Generator`` passed to
:meth:`Augmenter.__call__`. In the training loop that is the batch-sampling generator, whose state
is saved in the resumable state, so an augmented run resumes bit-identically and never touches the
global RNG. (MONAI has no ghosting transform; its Gibbs / k-space-spike noise are different
artefacts.) Formulas and parameter ranges follow TorchIO (0.18.73 as pinned by the public code):

* **gamma**: ``x ** gamma`` with ``log(gamma) ~ U(-0.3, 0.3)`` (``RandomGamma(log_gamma=(-0.3, 0.3))``).
* **bias field**: ``x * exp(sum_{i+j+k<=3} c_ijk X^i Y^j Z^k)``, ``c_ijk ~ U(-0.5, 0.5)`` (20 terms,
  ``RandomBiasField(coefficients=0.5, order=3)``), with X, Y the voxel-centre coordinates scaled to
  [-1, 1] as TorchIO does. TorchIO draws one 3D field per volume and the slice is cut afterwards, so
  the slice's height Z in the volume is drawn as ``Z ~ U(-1, 1)``; the 2D field is the 3D polynomial
  evaluated on that plane (same distribution as a random axial slice of a TorchIO-augmented volume).
* **blur**: separable Gaussian filter with per-axis ``std ~ U(0, 2)`` mm (``RandomBlur(std=(0, 2))``),
  i.e. ``U(0, 1)`` voxels at the thesis' 2 mm spacing (``blur_std_vox``; set it for other spacings).
  The kernel and the boundary handling replicate ``scipy.ndimage.gaussian_filter`` (``truncate=4``,
  mode ``reflect``). The through-plane std of TorchIO's 3D blur is dropped (one slice at a time).
* **ghosting**: k-space ghosting as TorchIO's ``Ghosting``: along one in-plane axis, the centred
  spectrum's lines ``0, n, 2n, ...`` (``n ~ U{4..10}`` ghosts) are scaled by ``1 - s``
  (``s ~ U(0.5, 1)``) and the central ``restore = 2 %`` of lines is put back; the image is the real
  part of the inverse FFT. The axis is drawn among the two in-plane axes (TorchIO's own rule for
  2D images); the through-plane axis of the 3D transform has no 2D equivalent.

Every sample of the batch gets its own Bernoulli draws and parameters. All random numbers are drawn
for every sample and every transform, applied or not, so the generator advances by a fixed amount
per call. The output is clipped to [0, 1] (TorchIO does not clip; the bias field and ghosting can
leave the range).
"""

from __future__ import annotations

import torch

_KEYS = ("blur_p", "bias_p", "gamma_p", "ghost_p", "blur_std_vox", "log_gamma", "bias_coefficient",
         "num_ghosts", "ghost_intensity", "ghost_restore", "seed")


def _uniform(n: int, lo: float, hi: float, gen: torch.Generator) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=gen, dtype=torch.float64)


def gamma_transform(x: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
    """``x ** gamma`` per sample.

    Parameters
    ----------
    x : Tensor (B, C, H, W), values >= 0
    gamma : Tensor (B,)
    """
    return x.clamp_min(0).pow(gamma.to(x.dtype).view(-1, 1, 1, 1))


def _centred_coords(n: int) -> torch.Tensor:
    """TorchIO's bias-field mesh: voxel centres ``arange(-n/2, n/2) + 0.5`` scaled to max 1."""
    c = torch.arange(n, dtype=torch.float64) - n / 2 + 0.5
    return c / c.max() if n > 1 else torch.zeros(1, dtype=torch.float64)


def bias_field(shape: tuple[int, int], coefficients: torch.Tensor, z: torch.Tensor, order: int = 3) -> torch.Tensor:
    """Multiplicative bias fields ``exp(sum c_ijk X^i Y^j Z^k)`` on the plane Z = z.

    Parameters
    ----------
    shape : (H, W)
    coefficients : Tensor (B, n_terms), n_terms = number of (i, j, k) with i + j + k <= order,
        ordered as TorchIO loops (i outer, k inner).
    z : Tensor (B,) plane height in [-1, 1].
    order : int

    Returns
    -------
    Tensor (B, 1, H, W) float64, strictly positive.
    """
    h, w = shape
    X = _centred_coords(h).view(h, 1)
    Y = _centred_coords(w).view(1, w)
    Z = z.to(torch.float64).view(-1, 1)
    # collapse the Z powers into per-sample coefficients of the in-plane monomials X^i Y^j
    plane_coef, basis, t = [], [], 0
    for i in range(order + 1):
        for j in range(order + 1 - i):
            a = torch.zeros(coefficients.shape[0], 1, dtype=torch.float64)
            for k in range(order + 1 - i - j):
                a = a + coefficients[:, t : t + 1].to(torch.float64) * Z**k
                t += 1
            plane_coef.append(a)
            basis.append((X**i * Y**j).reshape(-1))
    if t != coefficients.shape[1]:
        raise ValueError(f"order {order} needs {t} coefficients, got {coefficients.shape[1]}")
    log_field = torch.cat(plane_coef, 1) @ torch.stack(basis)  # (B, H*W)
    return torch.exp(log_field).view(-1, 1, h, w)


def _n_terms(order: int) -> int:
    return sum(1 for i in range(order + 1) for j in range(order + 1 - i) for _ in range(order + 1 - i - j))


def _gaussian_kernels(sigma: torch.Tensor, max_radius: int) -> torch.Tensor:
    """(B,) stds in voxels -> (B, 2r+1) normalised kernels as scipy (radius = int(4 sigma + 0.5))."""
    radius = min(int(4.0 * float(sigma.max()) + 0.5), max_radius) if sigma.numel() else 0
    x = torch.arange(-radius, radius + 1, dtype=torch.float64).view(1, -1)
    s = sigma.to(torch.float64).view(-1, 1)
    own = (4.0 * s + 0.5).floor().clamp(max=max_radius)  # each sample's own scipy radius
    k = torch.exp(-0.5 * x**2 / s.clamp_min(1e-12) ** 2) * (x.abs() <= own)
    k = torch.where(s > 1e-6, k, (x == 0).to(torch.float64))  # sigma 0 -> identity (scipy)
    return k / k.sum(1, keepdim=True)


def _reflect_pad(x: torch.Tensor, r: int, dim: int) -> torch.Tensor:
    """scipy ``mode='reflect'`` (edge repeated: d c b a | a b c d | d c b a), r <= size."""
    if r == 0:
        return x
    left = x.narrow(dim, 0, r).flip(dim)
    right = x.narrow(dim, x.shape[dim] - r, r).flip(dim)
    return torch.cat([left, x, right], dim)


def gaussian_blur(x: torch.Tensor, sigma_h: torch.Tensor, sigma_w: torch.Tensor) -> torch.Tensor:
    """Per-sample separable Gaussian blur, equal to ``scipy.ndimage.gaussian_filter(x_b, (sh, sw))``.

    Parameters
    ----------
    x : Tensor (B, C, H, W)
    sigma_h, sigma_w : Tensor (B,) stds in voxels along H and W.
    """
    b, c, h, w = x.shape
    out = x.to(torch.float64)
    for sigma, dim, size in ((sigma_h, 2, h), (sigma_w, 3, w)):
        k = _gaussian_kernels(sigma, size)  # (B, 2r+1)
        r = (k.shape[1] - 1) // 2
        padded = _reflect_pad(out, r, dim)
        acc = torch.zeros_like(out)
        for t in range(2 * r + 1):  # shifted-copy sum: cheaper than a grouped conv on the CPU
            acc += k[:, t].view(b, 1, 1, 1) * padded.narrow(dim, t, size)
        out = acc
    return out.to(x.dtype)


def ghosting(x: torch.Tensor, num_ghosts: torch.Tensor, intensity: torch.Tensor, axis: torch.Tensor,
             restore: float = 0.02) -> torch.Tensor:
    """TorchIO-style k-space ghosting along one in-plane axis per sample.

    Parameters
    ----------
    x : Tensor (B, C, H, W)
    num_ghosts : Tensor (B,) int, spacing n of the attenuated k-space lines (n ghosts).
    intensity : Tensor (B,) in [0, 1]; attenuated lines are multiplied by ``1 - intensity``.
    axis : Tensor (B,) int, 0 = along H (rows of k-space), 1 = along W.
    restore : float
        Fraction of central k-space lines restored (TorchIO: ``round(restore * n) // 2`` lines on
        each side of the centre, the centre line only if that is 0).
    """
    out = x.clone()
    for ax in (0, 1):
        sel = (axis == ax).nonzero().flatten()
        if sel.numel() == 0:
            continue
        dim = 2 + ax
        n = x.shape[dim]
        idx = torch.arange(n)
        factor = torch.ones(sel.numel(), n, dtype=torch.float64)
        hit = (idx.view(1, -1) % num_ghosts[sel].view(-1, 1)) == 0
        factor = torch.where(hit, (1.0 - intensity[sel].to(torch.float64)).view(-1, 1), factor)
        mid = n // 2
        size = int(round(restore * n)) if restore is not None else 0
        lo, hi = (mid - size // 2, mid + size // 2) if size // 2 > 0 else (mid, mid + 1)
        factor[:, lo:hi] = 1.0
        shape = [sel.numel(), 1, 1, 1]
        shape[dim] = n
        spec = torch.fft.fftshift(torch.fft.fft(x[sel].to(torch.float64), dim=dim), dim=dim)
        spec = spec * factor.view(shape)
        out[sel] = torch.fft.ifft(torch.fft.ifftshift(spec, dim=dim), dim=dim).real.to(x.dtype)
    return out


class Augmenter:
    """Random gamma, bias field, blur and ghosting applied per sample (TorchIO defaults, see module doc).

    Parameters
    ----------
    blur_p, bias_p, gamma_p, ghost_p : float
        Probability of each transform per sample (thesis: 0.25, 0.25, 0.5, 0.5).
    blur_std_vox : (float, float)
        Range of the Gaussian std in voxels, drawn independently per axis (TorchIO (0, 2) mm at 2 mm).
    log_gamma : (float, float)
        Range of log(gamma).
    bias_coefficient : float
        Polynomial coefficients ~ U(-c, c) (order 3).
    num_ghosts : (int, int)
        Inclusive range of the number of ghosts.
    ghost_intensity : (float, float)
        Range of the artefact strength s.
    ghost_restore : float
        Fraction of central k-space restored.
    seed : int, optional
        Seeds the augmenter's own generator, used when ``__call__`` gets no generator.
    """

    def __init__(self, blur_p=0.25, bias_p=0.25, gamma_p=0.5, ghost_p=0.5, *, blur_std_vox=(0.0, 1.0),
                 log_gamma=(-0.3, 0.3), bias_coefficient=0.5, num_ghosts=(4, 10), ghost_intensity=(0.5, 1.0),
                 ghost_restore=0.02, seed: int | None = None):
        for name, p in (("blur_p", blur_p), ("bias_p", bias_p), ("gamma_p", gamma_p), ("ghost_p", ghost_p)):
            if not 0.0 <= float(p) <= 1.0:
                raise ValueError(f"{name} must be a probability in [0, 1], got {p}")
        self.blur_p, self.bias_p, self.gamma_p, self.ghost_p = float(blur_p), float(bias_p), float(gamma_p), float(ghost_p)
        self.blur_std_vox = tuple(float(v) for v in blur_std_vox)
        self.log_gamma = tuple(float(v) for v in log_gamma)
        self.bias_coefficient = float(bias_coefficient)
        self.num_ghosts = tuple(int(v) for v in num_ghosts)
        if self.num_ghosts[0] < 1 or self.num_ghosts[1] < self.num_ghosts[0]:
            raise ValueError(f"num_ghosts must be an increasing range of positive ints, got {num_ghosts}")
        self.ghost_intensity = tuple(float(v) for v in ghost_intensity)
        self.ghost_restore = float(ghost_restore)
        self._gen = torch.Generator().manual_seed(int(seed)) if seed is not None else None

    def __repr__(self) -> str:
        return (f"Augmenter(blur_p={self.blur_p}, bias_p={self.bias_p}, gamma_p={self.gamma_p}, "
                f"ghost_p={self.ghost_p})")

    def __call__(self, batch: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Augment a batch of slices.

        Parameters
        ----------
        batch : Tensor (B, C, H, W), values in [0, 1], on the CPU
        generator : torch.Generator (CPU)
            Source of every random number; the same state gives the same output.

        Returns
        -------
        Tensor (B, C, H, W), same dtype, clipped to [0, 1]. The input is not modified.
        """
        if batch.dim() != 4:
            raise ValueError(f"Augmenter expects 2D slices (B, C, H, W), got shape {tuple(batch.shape)}")
        gen = generator if generator is not None else self._gen
        if gen is None:
            raise ValueError("pass a torch.Generator or construct the Augmenter with a seed")
        b, _, h, w = batch.shape
        x = batch.clone()
        # gamma
        apply = torch.rand(b, generator=gen) < self.gamma_p
        gamma = torch.exp(_uniform(b, *self.log_gamma, gen))
        if apply.any():
            x[apply] = gamma_transform(x[apply], gamma[apply])
        # bias field
        apply = torch.rand(b, generator=gen) < self.bias_p
        coef = _uniform(b * _n_terms(3), -self.bias_coefficient, self.bias_coefficient, gen).view(b, -1)
        z = _uniform(b, -1.0, 1.0, gen)
        if apply.any():
            x[apply] = (x[apply].to(torch.float64) * bias_field((h, w), coef[apply], z[apply])).to(x.dtype)
        # blur
        apply = torch.rand(b, generator=gen) < self.blur_p
        sig = _uniform(2 * b, *self.blur_std_vox, gen).view(b, 2)
        if apply.any():
            x[apply] = gaussian_blur(x[apply], sig[apply, 0], sig[apply, 1])
        # ghosting
        apply = torch.rand(b, generator=gen) < self.ghost_p
        n_ghosts = torch.randint(self.num_ghosts[0], self.num_ghosts[1] + 1, (b,), generator=gen)
        axis = torch.randint(0, 2, (b,), generator=gen)
        strength = _uniform(b, *self.ghost_intensity, gen)
        if apply.any():
            x[apply] = ghosting(x[apply], n_ghosts[apply], strength[apply], axis[apply], self.ghost_restore)
        return x.clamp_(0.0, 1.0)


def from_config(cfg: dict | None) -> Augmenter | None:
    """Build an :class:`Augmenter` from a config mapping, or None when augmentation is off.

    ``None``, ``{}``, ``{"enabled": False}`` and all four probabilities 0 mean off. Other keys are the
    :class:`Augmenter` arguments (``blur_p``, ``bias_p``, ``gamma_p``, ``ghost_p``, ...); missing
    probabilities take the thesis values (0.25, 0.25, 0.5, 0.5).
    """
    if not cfg:
        return None
    cfg = dict(cfg)
    if not cfg.pop("enabled", True):
        return None
    unknown = set(cfg) - set(_KEYS)
    if unknown:
        raise ValueError(f"unknown augmentation option(s) {sorted(unknown)}; expected some of {list(_KEYS)}")
    aug = Augmenter(**cfg)
    if max(aug.blur_p, aug.bias_p, aug.gamma_p, aug.ghost_p) == 0.0:
        return None
    return aug
