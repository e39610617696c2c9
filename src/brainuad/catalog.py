"""Facts about registered models that the workflow needs at parse time, without importing torch.

The Snakefile is parsed by every SLURM job (and by controller environments that have no torch), so
it must not import the model code. ``test_catalog_agrees_with_model_classes`` in
tests/models/test_models.py checks that these facts agree with the model classes.
"""

from pathlib import Path

#: Models with nothing to train (no train job; the reconstruct job builds them from their hparams).
LEARNING_FREE = frozenset({"thresh"})


# ------------------------------------------------------------------ feature backbones (brainuad.models.backbones)


def describe_backbone(spec: dict) -> str:
    """One-line description of a backbone spec for logs and the report, e.g. ``"ImageNet resnet18 (r18.pth)"``."""
    if not isinstance(spec, dict):
        return repr(spec)
    if spec.get("kind") == "imagenet":
        weights = spec.get("weights")
        return f"ImageNet {spec.get('arch')} ({Path(weights).name if weights else 'no weights file'})"
    if spec.get("kind") == "ssl":
        return f"in-domain SSL ResNet {list(spec.get('channels', (32, 64, 128, 256)))}"
    return repr(spec)


def backbone_configured(spec: dict | None) -> bool:
    """True when ``spec`` can be loaded: no backbone, an ImageNet spec whose weights file exists, or an
    ``ssl`` spec (its weights are produced by the workflow's ``pretrain_encoder`` stage)."""
    if not spec or spec.get("kind") == "ssl":
        return True
    weights = spec.get("weights")
    return bool(weights) and Path(weights).expanduser().is_file()


def entry_backbone(entry: dict) -> dict | None:
    """The ``hparams.backbone`` spec of a config model entry, or None for a model without a backbone."""
    spec = (entry.get("hparams") or {}).get("backbone")
    return spec if isinstance(spec, dict) else None


def entry_configured(entry: dict) -> bool:
    """False for a model entry whose backbone weights file is not set or missing: the workflow runs no job for
    it and its table rows say "not configured" (never a number)."""
    return backbone_configured(entry_backbone(entry))


def entry_backbone_label(entry: dict) -> str:
    """What the report says about a model's backbone: :func:`describe_backbone`, "" for a model without one."""
    spec = entry_backbone(entry)
    return describe_backbone(spec) if spec else ""


def ssl_encoder_signature(entry: dict) -> tuple:
    """(channels, blocks, norm, context_dim) of the ResNet encoder the ``pretrain_encoder`` stage trains for a
    config model entry: from its ``ssl`` backbone spec, else from a cDDPM's ``encoder_channels``,
    ``encoder_blocks``, ``encoder_norm``, ``context_dim`` hparams (defaults of
    :class:`brainuad.models.diffusion.cddpm.ContextEncoderConfig` and :class:`brainuad.models.encoder.ResNetEncoder`)."""
    spec = entry_backbone(entry)
    hp = entry.get("hparams") or {}
    if spec:
        got = (spec.get("channels"), spec.get("blocks"), spec.get("norm"), spec.get("context_dim"))
    else:
        got = (hp.get("encoder_channels"), hp.get("encoder_blocks"), hp.get("encoder_norm"), hp.get("context_dim"))
    defaults = ([32, 64, 128, 256], [2, 2, 2, 2], "batch", 128)
    return tuple(list(v) if isinstance(v, (list, tuple)) else v
                 for v in (d if g is None else g for g, d in zip(got, defaults)))
