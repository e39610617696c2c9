"""GPU fast paths shared by training and reconstruction, each behind a switch with a safe default.

* :func:`amp_enabled` / :func:`autocast`: bfloat16 autocast (``amp``: ``True`` = on CUDA only,
  ``"always"`` = on every device, CPU included, ``False`` = off).
* :func:`to_channels_last`: NHWC memory layout for 2D convolution networks (tensor cores prefer it).
* :func:`compile_forward`: ``torch.compile`` of a module's forward that falls back to eager mode,
  with a warning, when compilation fails on the first call.
* :func:`to_device`: pinned-memory, non-blocking host-to-GPU copies (a plain ``.to`` elsewhere).

config/README.md (``performance``) lists the switches and their defaults; ``benchmarks/gpu_check.sh``
measures each against fp32 eager.
"""

from __future__ import annotations

import contextlib
import warnings

import torch

#: values of an ``amp`` switch
AMP_VALUES = (False, True, "always")


def amp_enabled(setting, device: torch.device | str) -> bool:
    """Whether bfloat16 autocast runs: ``True`` on CUDA only, ``"always"`` everywhere, ``False`` never.

    Raises ValueError naming the value otherwise.
    """
    if isinstance(setting, str) and setting == "always":
        return True
    if not isinstance(setting, bool):
        raise ValueError(f"amp must be true, false or 'always', got {setting!r}")
    return setting and torch.device(device).type == "cuda"


def autocast(device: torch.device | str, enabled: bool):
    """``torch.autocast`` to bfloat16 on ``device``'s type when ``enabled``, else a null context."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)


def to_channels_last(model: torch.nn.Module, enabled: bool) -> torch.nn.Module:
    """Convert the 4D parameters and buffers of ``model`` to channels-last when ``enabled`` (in place).

    Inputs need not be converted: a convolution with channels-last weights propagates the layout.
    """
    if enabled:
        model.to(memory_format=torch.channels_last)
    return model


def compile_forward(module: torch.nn.Module, setting) -> torch.nn.Module:
    """Replace ``module.forward`` by its ``torch.compile`` version (state-dict keys unchanged).

    Parameters
    ----------
    module : nn.Module
    setting : bool or str
        False = eager (returned unchanged); True = ``torch.compile`` default mode; a string = that
        compile mode (``"reduce-overhead"``, ``"max-autotune"`` ...).

    Returns
    -------
    ``module``. When the compiled forward raises on a call (no compiler, an unsupported operation),
    a RuntimeWarning names the error and the module runs eagerly from then on.
    """
    if setting is False or setting is None:
        return module
    mode = None if setting is True else str(setting)
    eager = module.forward
    try:
        compiled = torch.compile(eager, mode=mode, dynamic=False)
    except Exception as err:  # noqa: BLE001 - any failure means: run eagerly
        warnings.warn(f"torch.compile failed ({type(err).__name__}: {err}); running {type(module).__name__} eagerly",
                      RuntimeWarning, stacklevel=2)
        return module
    state = {"compiled": True}

    def forward(*args, **kwargs):
        if state["compiled"]:
            try:
                return compiled(*args, **kwargs)
            except Exception as err:  # noqa: BLE001
                state["compiled"] = False
                warnings.warn(f"torch.compile of {type(module).__name__} failed on its first call "
                              f"({type(err).__name__}: {str(err)[:300]}); running it eagerly", RuntimeWarning,
                              stacklevel=2)
        return eager(*args, **kwargs)

    module.forward = forward
    module.compiled_forward = state  # lets callers and tests see whether the compiled path is in use
    return module


def network_of(model: torch.nn.Module) -> torch.nn.Module:
    """The module :func:`compile_forward` compiles: a diffusion model's Unet, else the model itself."""
    return getattr(model, "unet", model)


def prepare(model: torch.nn.Module, *, channels_last: bool = False, compile=False) -> torch.nn.Module:
    """Apply the layout and compile switches to a model (2D models only for channels-last). Returns it."""
    if getattr(model, "input_dims", 2) == 2:
        to_channels_last(model, channels_last)
    compile_forward(network_of(model), compile)
    return model


def to_device(tensor: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """Copy a CPU tensor to ``device``: through pinned memory without blocking on CUDA, plainly elsewhere."""
    device = torch.device(device)
    if device.type == "cuda" and tensor.device.type == "cpu":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)
