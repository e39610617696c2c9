"""Spatial erasing of P8.1 (Bengs, Behrendt et al. 2021; thesis Ch3.4.1): a training transform of the input only.

With probability ``p`` (0.5 in P8.1, so the network still sees unmodified images) each sample of a
training batch gets one of three erasing rules; the model is trained to reconstruct the *un-erased*
sample from the erased one (the loop passes the clean batch as ``target``, see
:func:`brainuad.training.loop.fit`). The same rules work on 2D slices (B, 1, H, W) and 3D volumes
(B, 1, D, H, W):

* ``patch`` (2D Patch / 3D Cube): one box whose size is a fraction f ~ U(``min_fraction``,
  ``max_fraction``) = U(1 %, 25 %) of the input. The box has the input's aspect ratio (side
  ``n_i * f^(1/d)`` along each axis, rounded, at least one voxel) and a uniformly random position
  among those where it fits inside the input, so its centre is a random voxel and the erased fraction
  is f up to rounding.
* ``multi`` (Multi-Patch / Multi-Cube): k ~ U{1, ..., ``max_patches``} (10) boxes of random size
  whose nominal fractions f_j = F * w_j add up to a total F ~ U(1 %, 25 %) (w ~ Dirichlet(1, ..., 1)),
  each at a random position where it fits. Boxes may overlap, so the erased fraction is at most F
  (and at least the largest box, F * max w_j).
* ``half`` (Half-Slice / Half-Volume): the left or the right half of the brain (side ~ U{left, right}),
  split at the centre of the brain's bounding box along the left-right axis (the last axis W of
  :func:`brainuad.data.pack.ras_to_dhw`, W = X of RAS); in 3D only in n ~ U{1, ..., ``max_slices``}
  (32) consecutive axial slices (first axis D) starting at a random slice of the brain's axial extent
  (the run is shortened to that extent). "Brain" = voxels > 0 of the skull-stripped input; only those
  are erased.

Fill (``fill``):

* ``"sample"`` (default; P8.1's "-n": "noise sampled from the image pixel distribution"): every erased
  voxel gets the value of a voxel drawn uniformly with replacement from the sample's own brain voxels
  (> 0; all voxels when the sample has none), i.e. i.i.d. draws from its empirical intensity distribution;
* ``"gaussian"`` (Ch3.4.1's wording): N(mean, std) of the sample's brain voxels, clipped to [0, 1];
* ``"zero"`` (P8.1's "-0").

P8.1 leaves the box shape, the size distribution and the split line unstated (method-spec §4.1); the
choices above are this package's. Every random number comes from the ``torch.Generator`` passed to
:meth:`Eraser.__call__` (the loop's batch-sampling generator, whose state is saved in the resumable
state), so an erased training run resumes bit-identically. The transform runs on the CPU batch before
it is moved to the model's device.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

MODES = ("patch", "multi", "half")
FILLS = ("sample", "gaussian", "zero")
_KEYS = ("mode", "fill", "p", "min_fraction", "max_fraction", "max_patches", "max_slices")


def _rand(gen: torch.Generator) -> float:
    return float(torch.rand((), generator=gen, dtype=torch.float64))


def _randint(lo: int, hi: int, gen: torch.Generator) -> int:
    """Uniform integer in [lo, hi]."""
    return int(torch.randint(lo, hi + 1, (), generator=gen))


def box_sides(shape: tuple[int, ...], fraction: float) -> tuple[int, ...]:
    """Sides of a box with the aspect ratio of ``shape`` covering ``fraction`` of it (rounded, >= 1 voxel)."""
    d = len(shape)
    scale = fraction ** (1.0 / d)
    return tuple(min(n, max(1, round(n * scale))) for n in shape)


def _place_box(mask: torch.Tensor, sides: tuple[int, ...], gen: torch.Generator) -> None:
    """Set a box of ``sides`` at a uniformly random position where it fits inside ``mask`` (in place)."""
    index = []
    for n, s in zip(mask.shape, sides):
        start = _randint(0, n - s, gen)
        index.append(slice(start, start + s))
    mask[tuple(index)] = True


def brain_midline(x: torch.Tensor) -> int:
    """Split index along the last axis: centre of the bounding box of the voxels > 0 (half the width if none).

    Parameters
    ----------
    x : Tensor (*spatial), one sample without channel axis
    """
    cols = (x > 0).flatten(0, -2).any(0) if x.dim() > 1 else x > 0
    idx = torch.nonzero(cols).flatten()
    if idx.numel() == 0:
        return x.shape[-1] // 2
    return (int(idx[0]) + int(idx[-1]) + 1) // 2


@dataclass(frozen=True)
class Eraser:
    """The spatial-erasing transform (see the module docstring for the rules).

    Attributes
    ----------
    mode : {"patch", "multi", "half"}
    fill : {"sample", "gaussian", "zero"}
    p : float
        Probability that a sample is erased.
    min_fraction, max_fraction : float
        Range of the erased size as a fraction of the input (patch: one box; multi: all boxes together).
    max_patches : int
        Most boxes of ``multi``.
    max_slices : int
        Most consecutive axial slices of ``half`` in 3D.
    """

    mode: str
    fill: str = "sample"
    p: float = 0.5
    min_fraction: float = 0.01
    max_fraction: float = 0.25
    max_patches: int = 10
    max_slices: int = 32

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"erasing mode must be one of {MODES}, got {self.mode!r}")
        if self.fill not in FILLS:
            raise ValueError(f"erasing fill must be one of {FILLS}, got {self.fill!r}")
        if not 0 <= self.p <= 1:
            raise ValueError(f"erasing p must be in [0, 1], got {self.p}")
        if not 0 < self.min_fraction <= self.max_fraction <= 1:
            raise ValueError(f"erasing needs 0 < min_fraction <= max_fraction <= 1, got {self.min_fraction}, "
                             f"{self.max_fraction}")
        if self.max_patches < 1 or self.max_slices < 1:
            raise ValueError("erasing max_patches and max_slices must be >= 1")

    def sample_mask(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """Erasing mask of one sample.

        Parameters
        ----------
        x : Tensor (*spatial) — (H, W) or (D, H, W), one sample without channel axis
        gen : torch.Generator (CPU)

        Returns
        -------
        BoolTensor of x's shape, True = erased.
        """
        shape = tuple(x.shape)
        mask = torch.zeros(shape, dtype=torch.bool)
        lo, hi = self.min_fraction, self.max_fraction
        if self.mode == "patch":
            _place_box(mask, box_sides(shape, lo + (hi - lo) * _rand(gen)), gen)
        elif self.mode == "multi":
            k = _randint(1, self.max_patches, gen)
            total = lo + (hi - lo) * _rand(gen)
            w = -torch.log(torch.rand(k, generator=gen, dtype=torch.float64).clamp_min(1e-12))
            for f in (total * w / w.sum()).tolist():
                _place_box(mask, box_sides(shape, f), gen)
        else:
            right = _randint(0, 1, gen) == 1
            mid = brain_midline(x)
            cols = slice(mid, None) if right else slice(0, mid)
            if x.dim() == 3:
                rows = torch.nonzero((x > 0).flatten(1).any(1)).flatten()
                first, last = (int(rows[0]), int(rows[-1])) if rows.numel() else (0, shape[0] - 1)
                n = min(_randint(1, self.max_slices, gen), last - first + 1)
                start = _randint(first, last - n + 1, gen)
                mask[start : start + n, :, cols] = True
            else:
                mask[..., cols] = True
            mask &= x > 0
        return mask

    def fill_values(self, x: torch.Tensor, count: int, gen: torch.Generator) -> torch.Tensor:
        """``count`` fill values for one sample x (*spatial), drawn from its own intensities (see ``fill``)."""
        if self.fill == "zero" or count == 0:
            return torch.zeros(count, dtype=x.dtype)
        brain = x[x > 0]
        if brain.numel() == 0:
            brain = x.flatten()
        if self.fill == "sample":
            return brain[torch.randint(0, brain.numel(), (count,), generator=gen)]
        mean, std = brain.double().mean(), (brain.double().std() if brain.numel() > 1 else torch.zeros((), dtype=torch.float64))
        noise = torch.randn(count, generator=gen, dtype=torch.float64)
        return (mean + std * noise).clamp(0.0, 1.0).to(x.dtype)

    def masks(self, batch: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """Erasing masks of a batch: BoolTensor of batch's shape (all False for samples not erased).

        Parameters
        ----------
        batch : Tensor (B, 1, H, W) or (B, 1, D, H, W), on the CPU
        gen : torch.Generator (CPU)
        """
        out = torch.zeros(batch.shape, dtype=torch.bool)
        for b in range(batch.shape[0]):
            if _rand(gen) < self.p:
                out[b, 0] = self.sample_mask(batch[b, 0], gen)
        return out

    def __call__(self, batch: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """Erased copy of ``batch`` (the input is never modified; it stays the loss target).

        Parameters
        ----------
        batch : Tensor (B, 1, H, W) or (B, 1, D, H, W), on the CPU
        gen : torch.Generator (CPU)

        Returns
        -------
        Tensor of batch's shape and dtype.
        """
        if batch.dim() not in (4, 5) or batch.shape[1] != 1:
            raise ValueError(f"erasing expects (B, 1, H, W) or (B, 1, D, H, W) batches, got {tuple(batch.shape)}")
        masks = self.masks(batch, gen)
        out = batch.clone()
        for b in range(batch.shape[0]):
            m = masks[b, 0]
            count = int(m.sum())
            if count:
                out[b, 0][m] = self.fill_values(batch[b, 0], count, gen)
        return out


def from_config(cfg: dict | None) -> Eraser | None:
    """An :class:`Eraser` from a ``train.erasing`` config entry; None (or ``mode: none``) = no erasing.

    Raises ValueError naming an unknown key.
    """
    if not cfg or cfg.get("mode", "none") == "none":
        return None
    unknown = set(cfg) - set(_KEYS)
    if unknown:
        raise ValueError(f"train.erasing: unknown key(s) {sorted(unknown)}; allowed: {list(_KEYS)}")
    return Eraser(**cfg)
