"""Pre-trained feature backbones of the feature-based baselines (FAE, RD, EDC) and of LPIPS-style distances.

Nothing is ever downloaded: a backbone is either

``{"kind": "imagenet", "arch": ..., "weights": PATH}``
    an ImageNet CNN whose weights the user put in a local file. The architectures are declared here
    with torchvision's module names, so the file is a plain ``torch.save`` of the ``state_dict`` of the
    public torchvision checkpoint (``resnet18-f37072fd.pth``, ``resnet34-b627a593.pth``,
    ``resnet50-0676ba61.pth`` / ``-11ad3fa6.pth``, ``wide_resnet50_2-95faca4d.pth``; the ``fc.*``
    classifier keys may be present and are ignored) or, for ``arch: vgg16``, the VGG16 convolutions
    (``features.<i>.*``, e.g. the LPIPS weights file of :mod:`brainuad.evaluation.lpips`, which shares
    this declaration). ``timm`` is not used because it imports torchvision, which does not import in
    this project's environment.
``{"kind": "ssl", ...}``
    the in-domain alternative: the :class:`~brainuad.models.encoder.ResNetEncoder` pre-trained by
    masked image modelling on the fold's healthy training split, by the same ``pretrain_encoder`` DAG
    stage that the SSL cDDPM uses (a model with a ``pretrain`` config section gets the checkpoint as
    ``pretrained_encoder``). The spec holds the encoder's architecture (``channels``, ``blocks``,
    ``norm``).

Both return, from :meth:`forward`, the list of feature maps at the requested ``layers`` (1-based stage
indices; ResNet ``layer1..layer4``, VGG16 ``relu1_2 .. relu5_3``), finest first. A spec whose weights are
missing raises :class:`BackboneNotConfigured`; the workflow reports such a model's rows as "not
configured" instead of numbers (:func:`configured`).

Input scaling (``input_norm``): ``"imagenet"`` (grey replicated to RGB, then the ImageNet mean / std of
torchvision's weights; default for ImageNet backbones), ``"centered"`` (``2x - 1``, replicated to RGB:
what the public FAE code feeds its ResNet-18), ``"lpips"`` (``2x - 1`` then the LPIPS scaling layer) or
``"none"`` (x in [0, 1] as is; the default of SSL backbones, which were pre-trained on such slices).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn as nn

from ..catalog import backbone_configured as configured  # noqa: F401  (torch-free, used at parse time)
from ..catalog import describe_backbone as describe

KINDS = ("imagenet", "ssl")
#: torchvision ResNets: (block, blocks per stage, bottleneck width multiplier)
RESNETS = {
    "resnet18": ("basic", (2, 2, 2, 2), 1),
    "resnet34": ("basic", (3, 4, 6, 3), 1),
    "resnet50": ("bottleneck", (3, 4, 6, 3), 1),
    "wide_resnet50_2": ("bottleneck", (3, 4, 6, 3), 2),
}
ARCHS = (*RESNETS, "vgg16")
INPUT_NORMS = ("imagenet", "centered", "lpips", "none")
#: VGG16 "D" configuration; "M" = 2x2 max pooling (torchvision's ``features`` indices follow from it)
VGG16_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512]
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
_LPIPS_SHIFT = (-0.030, -0.088, -0.188)
_LPIPS_SCALE = (0.458, 0.448, 0.450)


class BackboneNotConfigured(FileNotFoundError):
    """A backbone's weights file is not configured or does not exist (nothing is ever downloaded).

    Parameters
    ----------
    spec : dict
        The backbone spec.
    reason : str
        What is missing, in plain words.
    """

    def __init__(self, spec: dict, reason: str):
        self.spec = dict(spec)
        super().__init__(f"backbone {describe(spec)} not configured: {reason}")


# --------------------------------------------------------------------------------------------
# architectures with torchvision's parameter names
# --------------------------------------------------------------------------------------------


class _Basic(nn.Module):
    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int = 1, width: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or cin != planes:
            self.downsample = nn.Sequential(nn.Conv2d(cin, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class _Bottleneck(nn.Module):
    """torchvision's ResNet v1.5 bottleneck (stride on the 3x3 convolution)."""

    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1, width: int = 1):
        super().__init__()
        mid = planes * width
        cout = planes * self.expansion
        self.conv1 = nn.Conv2d(cin, mid, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, mid, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv3 = nn.Conv2d(mid, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


def _scaling(input_norm: str) -> tuple[tuple, tuple, bool]:
    """(shift, scale, centre) applied as ``((2x - 1 if centre else x) - shift) / scale``."""
    if input_norm == "imagenet":
        return _IMAGENET_MEAN, _IMAGENET_STD, False
    if input_norm == "lpips":
        return _LPIPS_SHIFT, _LPIPS_SCALE, True
    if input_norm == "centered":
        return (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), True
    if input_norm == "none":
        return (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), False
    raise ValueError(f"backbone input_norm must be one of {INPUT_NORMS}, got {input_norm!r}")


class _FeatureNet(nn.Module):
    """Shared input handling: grey -> RGB replication and the input scaling of ``input_norm``."""

    def _init_input(self, in_channels: int, rgb: bool, input_norm: str, layers: Sequence[int], n_stages: int):
        self.in_channels = int(in_channels)
        if rgb and self.in_channels not in (1, 3):
            raise ValueError(f"an ImageNet backbone takes 1 (grey, replicated) or 3 channels, got {in_channels}")
        self.rgb = rgb
        self.layers = [int(i) for i in layers]
        if not self.layers or sorted(set(self.layers)) != self.layers or not all(1 <= i <= n_stages for i in self.layers):
            raise ValueError(f"backbone layers must be increasing stage indices in 1..{n_stages}, got {list(layers)}")
        shift, scale, centre = _scaling(input_norm)
        c = 3 if rgb else self.in_channels
        self.input_norm = input_norm
        self.centre = centre
        self.register_buffer("shift", torch.tensor(shift[:1] * c if c != 3 else shift).view(1, c, 1, 1),
                             persistent=False)
        self.register_buffer("scale", torch.tensor(scale[:1] * c if c != 3 else scale).view(1, c, 1, 1),
                             persistent=False)

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, H, W) in [0, 1] -> the network's input."""
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected (B, {self.in_channels}, H, W), got {tuple(x.shape)}")
        if self.rgb and x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if self.centre:
            x = x * 2 - 1
        return (x - self.shift.to(x)) / self.scale.to(x)


class ResNetFeatures(_FeatureNet):
    """torchvision-layout ResNet returning the outputs of ``layer<i>`` for i in ``layers``.

    Parameters
    ----------
    arch : one of ``RESNETS``
    in_channels : {1, 3}
    layers : sequence of int in 1..4
    input_norm : one of ``INPUT_NORMS``

    Attributes
    ----------
    out_channels, strides : list of int
        Channels and stride (w.r.t. the input) of each returned map: ``layer<i>`` has stride
        ``2 ** (i + 1)`` (ImageNet stem: 7x7 stride-2 convolution and max pooling).
    """

    def __init__(self, arch: str = "resnet18", in_channels: int = 1, layers: Sequence[int] = (1, 2, 3),
                 input_norm: str = "imagenet"):
        super().__init__()
        if arch not in RESNETS:
            raise ValueError(f"unknown ResNet {arch!r}; available: {', '.join(RESNETS)}")
        kind, blocks, width = RESNETS[arch]
        block = _Basic if kind == "basic" else _Bottleneck
        self.arch = arch
        self._init_input(in_channels, True, input_norm, layers, 4)
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin = 64
        for i, (planes, n) in enumerate(zip((64, 128, 256, 512)[: self.layers[-1]], blocks)):  # unused stages not built
            stage = []
            for j in range(n):
                stage.append(block(cin, planes, 2 if (j == 0 and i > 0) else 1, width))
                cin = planes * block.expansion
            setattr(self, f"layer{i + 1}", nn.Sequential(*stage))
        self.out_channels = [64 * 2 ** (i - 1) * block.expansion for i in self.layers]
        self.strides = [2 ** (i + 1) for i in self.layers]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """(B, in_channels, H, W) in [0, 1] -> [(B, out_channels[k], H / strides[k], W / strides[k])]."""
        h = self.maxpool(self.relu(self.bn1(self.conv1(self.prepare(x)))))
        out = []
        for i in range(1, self.layers[-1] + 1):
            h = getattr(self, f"layer{i}")(h)
            if i in self.layers:
                out.append(h)
        return out


def vgg16_layers() -> tuple[nn.Sequential, list[int]]:
    """torchvision's VGG16 ``features`` (convolutions + ReLU + max pooling) and the indices of the ReLU
    before each pooling (relu1_2, relu2_2, relu3_3, relu4_3) and of the last one (relu5_3): LPIPS's taps."""
    layers, cin = [], 3
    for v in VGG16_CFG:
        if v == "M":
            layers.append(nn.MaxPool2d(2))
        else:
            layers += [nn.Conv2d(cin, v, 3, padding=1), nn.ReLU(inplace=False)]
            cin = v
    taps = [i + 1 for i, layer in enumerate(layers) if isinstance(layer, nn.Conv2d)
            and (i + 2 == len(layers) or isinstance(layers[i + 2], nn.MaxPool2d))]
    return nn.Sequential(*layers), taps


class VGG16Features(_FeatureNet):
    """VGG16 returning relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 (stages 1..5) for i in ``layers``.

    Parameters as :class:`ResNetFeatures` (``layers`` in 1..5; stage i has stride ``2 ** (i - 1)``).
    """

    def __init__(self, in_channels: int = 1, layers: Sequence[int] = (1, 2, 3, 4, 5), input_norm: str = "lpips"):
        super().__init__()
        self.arch = "vgg16"
        self._init_input(in_channels, True, input_norm, layers, 5)
        self.features, self.taps = vgg16_layers()
        channels = (64, 128, 256, 512, 512)
        self.out_channels = [channels[i - 1] for i in self.layers]
        self.strides = [2 ** (i - 1) for i in self.layers]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """(B, in_channels, H, W) in [0, 1] -> list of (B, C_k, H / stride_k, W / stride_k)."""
        h, out = self.prepare(x), []
        last = self.taps[self.layers[-1] - 1]
        for i, layer in enumerate(self.features):
            h = layer(h)
            if i in self.taps and self.taps.index(i) + 1 in self.layers:
                out.append(h)
            if i == last:
                break
        return out


class SSLFeatures(_FeatureNet):
    """The in-domain :class:`~brainuad.models.encoder.ResNetEncoder` returning its stage outputs.

    Parameters
    ----------
    in_channels : int
    layers : sequence of int in 1..len(channels)
        Stage i has stride ``2 ** (i - 1)`` (stride-1 stem, see :mod:`brainuad.models.encoder`).
    channels, blocks, norm
        :class:`~brainuad.models.encoder.ResNetEncoder` arguments (its ``context_dim`` head is kept,
        unused, so that the SSL checkpoint's state dict loads unchanged).
    input_norm : one of ``INPUT_NORMS``; default "none" (the SSL pre-training saw slices in [0, 1]).
    """

    def __init__(self, in_channels: int = 1, layers: Sequence[int] = (1, 2, 3), channels=(32, 64, 128, 256),
                 blocks=(2, 2, 2, 2), norm: str = "batch", context_dim: int = 128, input_norm: str = "none"):
        super().__init__()
        from .encoder import ResNetEncoder

        self.arch = "ssl_resnet"
        self.encoder = ResNetEncoder(in_channels, channels, blocks, context_dim, norm)
        self._init_input(in_channels, False, input_norm, layers, len(self.encoder.stages))
        self.out_channels = [int(channels[i - 1]) for i in self.layers]
        self.strides = [2 ** (i - 1) for i in self.layers]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """(B, in_channels, H, W) in [0, 1] -> list of (B, C_k, H / stride_k, W / stride_k)."""
        h, out = self.encoder.stem(self.prepare(x)), []
        for i, stage in enumerate(self.encoder.stages[: self.layers[-1]], start=1):
            h = stage(h)
            if i in self.layers:
                out.append(h)
        return out


# --------------------------------------------------------------------------------------------
# specs
# --------------------------------------------------------------------------------------------

_SSL_ARCH_KEYS = ("channels", "blocks", "norm", "context_dim")


def _check_spec(spec: dict) -> dict:
    if not isinstance(spec, dict) or spec.get("kind") not in KINDS:
        raise ValueError(f"backbone spec needs kind in {KINDS}, got {spec!r}")
    known = {"imagenet": {"kind", "arch", "weights", "layers", "input_norm"},
             "ssl": {"kind", "weights", "layers", "input_norm", *_SSL_ARCH_KEYS}}[spec["kind"]]
    unknown = sorted(set(spec) - known)
    if unknown:
        raise ValueError(f"backbone spec of kind {spec['kind']!r}: unknown keys {unknown}; allowed {sorted(known)}")
    if spec["kind"] == "imagenet" and spec.get("arch") not in ARCHS:
        raise ValueError(f"backbone arch must be one of {ARCHS}, got {spec.get('arch')!r}")
    return spec


def ssl_encoder_hparams(spec: dict, in_channels: int = 1) -> dict:
    """ResNetEncoder arguments of an ``ssl`` spec: what the ``pretrain_encoder`` stage trains."""
    _check_spec(spec)
    if spec["kind"] != "ssl":
        raise ValueError(f"only an 'ssl' backbone is pre-trained in the workflow, got kind {spec['kind']!r}")
    from .encoder import ResNetEncoder  # noqa: F401  (the keys below are its arguments)

    out = {"in_channels": int(in_channels), "channels": [int(c) for c in spec.get("channels", (32, 64, 128, 256))],
           "blocks": [int(b) for b in spec.get("blocks", (2, 2, 2, 2))], "norm": spec.get("norm", "batch")}
    if "context_dim" in spec:
        out["context_dim"] = int(spec["context_dim"])
    return out


def build_backbone(spec: dict, *, in_channels: int = 1) -> nn.Module:
    """The backbone's architecture with freshly initialised weights (no file is read).

    Used to rebuild a model from its own checkpoint (whose state dict holds the backbone) and by tests;
    :func:`load_backbone` is the constructor that loads the configured weights.
    """
    _check_spec(spec)
    layers = spec.get("layers")
    if spec["kind"] == "ssl":
        arch = ssl_encoder_hparams(spec, in_channels)
        arch.pop("in_channels")
        return SSLFeatures(in_channels, layers or (1, 2, 3), input_norm=spec.get("input_norm", "none"), **arch)
    if spec["arch"] == "vgg16":
        return VGG16Features(in_channels, layers or (1, 2, 3, 4, 5), spec.get("input_norm", "lpips"))
    return ResNetFeatures(spec["arch"], in_channels, layers or (1, 2, 3), spec.get("input_norm", "imagenet"))


def _weights_state(spec: dict, path: Path) -> dict:
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # noqa: BLE001 - any unreadable file is the user's input error
        raise ValueError(f"{path}: cannot be read as a torch weights file ({err})") from err
    if spec["kind"] == "ssl":
        if not isinstance(state, dict) or "encoder_state_dict" not in state:
            raise ValueError(f"{path}: no 'encoder_state_dict' (expected a checkpoint of the SSL pre-training)")
        return {f"encoder.{k}": v for k, v in state["encoder_state_dict"].items()}
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a state dict, got {type(state).__name__}")
    return state


def load_backbone(spec: dict, *, in_channels: int = 1, device: str | torch.device = "cpu") -> nn.Module:
    """The configured backbone with its weights, in eval mode on ``device``.

    Parameters
    ----------
    spec : dict
        ``{"kind": "imagenet", "arch": one of ARCHS, "weights": path, "layers": [...], "input_norm": ...}``
        or ``{"kind": "ssl", "weights": SSL checkpoint, "channels": [...], "blocks": [...], "norm": ...,
        "layers": [...]}`` (see the module docstring).
    in_channels : int
        Channels of the images (1: grey MR slices; replicated to RGB for ImageNet backbones).
    device : str or torch.device

    Returns
    -------
    nn.Module whose ``forward(x (B, in_channels, H, W) in [0, 1])`` returns the list of feature maps at
    ``spec["layers"]``, finest first; ``out_channels`` and ``strides`` describe them. Parameters keep
    ``requires_grad`` (the caller freezes a teacher). ResNet stages after the last tapped layer are not
    built (their keys in the file are ignored).

    Raises
    ------
    BackboneNotConfigured
        ``weights`` is empty or names no existing file (nothing is downloaded).
    ValueError
        The file is not a weights file of this architecture (the message names the file and the keys).
    """
    net = build_backbone(spec, in_channels=in_channels)
    weights = spec.get("weights")
    if not weights:
        raise BackboneNotConfigured(spec, "no weights file is set (`weights:`); nothing is downloaded at run time")
    path = Path(weights).expanduser()
    if not path.is_file():
        raise BackboneNotConfigured(spec, f"weights file {path} does not exist")
    state = _weights_state(spec, path)
    expected = net.state_dict()
    if spec["kind"] == "imagenet" and spec["arch"] != "vgg16":
        unused = tuple(f"layer{i}." for i in range(net.layers[-1] + 1, 5))  # stages past the last tapped one
        state = {k: v for k, v in state.items() if not k.startswith(("fc.", *unused))
                 and not k.endswith("num_batches_tracked")}
        expected = {k: v for k, v in expected.items() if not k.endswith("num_batches_tracked")}
    elif spec["kind"] == "imagenet":
        state = {k: v for k, v in state.items() if k.startswith("features.")}
    missing = sorted(set(expected) - set(state))
    bad = sorted(k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape))
    extra = sorted(k for k in set(state) - set(expected) if not k.endswith("num_batches_tracked"))
    if missing or bad or extra:
        raise ValueError(f"{path}: not a {describe(spec)} weights file (missing keys {missing[:5]}, "
                         f"unexpected keys {extra[:5]}, wrong shapes {bad[:5]})")
    net.load_state_dict(state, strict=False)
    return net.to(device).eval()


# --------------------------------------------------------------------------------------------
# backbones inside registered models
# --------------------------------------------------------------------------------------------


def model_backbone(spec: dict, pretrained_encoder=None, *, in_channels: int = 1) -> tuple[nn.Module, bool]:
    """The backbone a feature-based model builds at construction, and whether its weights are loaded.

    Parameters
    ----------
    spec : dict
        The model's ``backbone`` hyper-parameter (see :func:`load_backbone`).
    pretrained_encoder : path, optional
        The ``pretrain_encoder`` stage's checkpoint (a model with a ``pretrain`` config section gets it;
        only for ``kind: ssl``). An ``imagenet`` spec reads its own ``weights``.
    in_channels : int

    Returns
    -------
    (backbone, loaded). ``loaded`` is False only for an ``ssl`` spec built without its checkpoint: the
    architecture alone, which is right when the model is rebuilt from its own checkpoint (the state dict
    holds the backbone) and wrong for training; the models call :func:`require_loaded` before using it.

    Raises
    ------
    BackboneNotConfigured
        An ``imagenet`` spec whose weights file is not set or missing.
    """
    _check_spec(spec)
    if spec["kind"] == "ssl":
        if pretrained_encoder is None:
            return build_backbone(spec, in_channels=in_channels), False
        return load_backbone({**spec, "weights": str(pretrained_encoder)}, in_channels=in_channels), True
    if pretrained_encoder is not None:
        raise ValueError("pretrained_encoder is only used by an 'ssl' backbone; this one is "
                         f"{describe(spec)} (remove the model's `pretrain` section)")
    return load_backbone(spec, in_channels=in_channels), True


def require_loaded(model: nn.Module) -> None:
    """Raise :class:`BackboneNotConfigured` when ``model.backbone_loaded`` is False (an ``ssl`` backbone
    without the ``pretrain_encoder`` checkpoint and not restored from a trained model)."""
    if not getattr(model, "backbone_loaded", True):
        raise BackboneNotConfigured(model.backbone_spec, "an 'ssl' backbone needs the SSL pre-training: give the "
                                    "model a `pretrain` section (the pretrain_encoder stage) or restore a trained "
                                    "checkpoint")


class BackboneModelMixin:
    """What every backbone-based model shares: ``encoder_hparams`` for the ``pretrain_encoder`` stage and
    marking an ``ssl`` backbone as loaded when the model's own checkpoint is restored."""

    @staticmethod
    def encoder_hparams(hparams: dict) -> dict:
        """ResNetEncoder arguments the ``pretrain_encoder`` stage trains for a model with ``hparams``."""
        return ssl_encoder_hparams(hparams.get("backbone") or {}, int(hparams.get("in_channels", 1)))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        if any(k.startswith(prefix + "backbone.") for k in state_dict):
            self.backbone_loaded = True



def feature_distance_map(net: nn.Module, a: torch.Tensor, b: torch.Tensor, weights=None) -> torch.Tensor:
    """Pixel-wise LPIPS-style distance of images a, b under a feature backbone (RA / PHANES scores).

    Per returned layer k: channels unit-normalised at every position (``f / (||f||_2 + 1e-10)``, as LPIPS),
    squared difference, summed over channels (or weighted by ``weights[k]`` of shape (C_k,), e.g. LPIPS's
    linear layers), bilinearly upsampled (``align_corners=False``) to a's size; the mean over layers.

    Parameters
    ----------
    net : backbone from :func:`load_backbone` / :func:`build_backbone`
    a, b : Tensor (B, C, H, W) in [0, 1]
    weights : list of Tensor (C_k,), optional

    Returns
    -------
    Tensor (B, 1, H, W), >= 0 (at most 4 per layer without weights).
    """
    import torch.nn.functional as F

    out = 0.0
    fa, fb = net(a), net(b)
    for k, (x, y) in enumerate(zip(fa, fb)):
        x = x / (x.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
        y = y / (y.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
        d = (x - y).pow(2)
        d = (d * weights[k].to(d).view(1, -1, 1, 1)).sum(1, keepdim=True) if weights is not None else d.sum(1, keepdim=True)
        out = out + F.interpolate(d, size=tuple(a.shape[-2:]), mode="bilinear", align_corners=False)
    return out / len(fa)
