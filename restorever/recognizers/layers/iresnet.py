"""IResNet, the ArcFace backbone of insightface's arcface_torch (Deng et al., "ArcFace", CVPR 2019; Duta et al.,
"Improved Residual Networks", 2020), written for restorever.

The module tree and parameter names match arcface_torch's ``backbones/iresnet.py``, so its released
``backbone.pth`` files (plain state_dicts, no ``module.`` prefix) load strictly: stem ``conv1``/``bn1``/``prelu``,
stages ``layer1``..``layer4`` of pre-activation blocks (``bn1 -> conv1 -> bn2 -> prelu -> conv2 -> bn3`` plus the
identity or ``downsample``), then ``bn2 -> flatten -> dropout -> fc -> features`` (BatchNorm1d).

Input: ``[B, 3, 112, 112]`` float RGB already normalised to ``(x - 127.5) / 127.5`` (range [-1, 1]).
Output: ``[B, num_features]`` float32, the raw ``features`` output (not L2-normalised).
"""
from __future__ import annotations

import contextlib
from typing import Sequence

import torch
from torch import nn

__all__ = ["IBasicBlock", "IResNet", "IRESNET_LAYERS", "iresnet"]

#: Blocks per stage for the depths arcface_torch releases (its ``iresnet18`` ... ``iresnet200``).
IRESNET_LAYERS: dict[int, tuple[int, int, int, int]] = {
    18: (2, 2, 2, 2),
    34: (3, 4, 6, 3),
    50: (3, 4, 14, 3),
    100: (3, 13, 30, 3),
    200: (6, 26, 60, 6),
}

_BN_EPS = 1e-5
_STAGE_WIDTHS = (64, 128, 256, 512)


class IBasicBlock(nn.Module):
    """Pre-activation residual block; the stride sits on the *second* 3x3 conv. No activation after the sum."""

    def __init__(self, in_channels: int, channels: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        # Attribute order = state_dict order of the released checkpoints.
        self.bn1 = nn.BatchNorm2d(in_channels, eps=_BN_EPS)
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels, eps=_BN_EPS)
        self.prelu = nn.PReLU(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, stride=stride, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(channels, eps=_BN_EPS)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        shortcut = x if self.downsample is None else self.downsample(x)
        return out + shortcut


class IResNet(nn.Module):
    """ArcFace IResNet with arcface_torch's state_dict layout.

    Args:
        layers: blocks per stage (see :data:`IRESNET_LAYERS`); every stage starts with stride 2.
        num_features: embedding size (512 in every released model).
        dropout: dropout before ``fc`` (0 in every released model).
        input_size: side of the square input; the flattened trunk output is ``512 * (input_size // 16) ** 2``.
        autocast_dtype: ``torch.float16`` / ``torch.bfloat16`` runs the trunk (``conv1`` .. ``bn2``) under CUDA
            autocast and ``fc`` + ``features`` in float32, as arcface_torch's ``fp16=True`` does. It only acts on
            CUDA inputs; CPU inputs always run in the input's dtype (float32 normally).
    """

    def __init__(self, layers: Sequence[int], num_features: int = 512, dropout: float = 0.0, input_size: int = 112,
                 autocast_dtype: torch.dtype | None = None):
        super().__init__()
        if len(layers) != 4 or any(int(n) < 1 for n in layers):
            raise ValueError(f"IResNet: layers must be 4 positive block counts, got {list(layers)}")
        if input_size % 16:
            raise ValueError(f"IResNet: input_size must be a multiple of 16, got {input_size}")
        self.layers_config = tuple(int(n) for n in layers)
        self.num_features = int(num_features)
        self.input_size = int(input_size)
        self.autocast_dtype = autocast_dtype
        self._in_channels = 64

        self.conv1 = nn.Conv2d(3, 64, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64, eps=_BN_EPS)
        self.prelu = nn.PReLU(64)
        self.layer1 = self._make_stage(_STAGE_WIDTHS[0], self.layers_config[0])
        self.layer2 = self._make_stage(_STAGE_WIDTHS[1], self.layers_config[1])
        self.layer3 = self._make_stage(_STAGE_WIDTHS[2], self.layers_config[2])
        self.layer4 = self._make_stage(_STAGE_WIDTHS[3], self.layers_config[3])
        self.bn2 = nn.BatchNorm2d(_STAGE_WIDTHS[3], eps=_BN_EPS)
        self.dropout = nn.Dropout(p=dropout)
        self.fc = nn.Linear(_STAGE_WIDTHS[3] * (input_size // 16) ** 2, num_features)
        self.features = nn.BatchNorm1d(num_features, eps=_BN_EPS)
        # arcface_torch freezes the BN1d scale at 1; it is still a state_dict entry.
        nn.init.constant_(self.features.weight, 1.0)
        self.features.weight.requires_grad = False

    def _make_stage(self, channels: int, blocks: int) -> nn.Sequential:
        downsample = nn.Sequential(
            nn.Conv2d(self._in_channels, channels, 1, stride=2, bias=False),
            nn.BatchNorm2d(channels, eps=_BN_EPS),
        )
        stage = [IBasicBlock(self._in_channels, channels, stride=2, downsample=downsample)]
        self._in_channels = channels
        stage += [IBasicBlock(channels, channels) for _ in range(blocks - 1)]
        return nn.Sequential(*stage)

    def _autocast(self, x: torch.Tensor):
        if self.autocast_dtype is None or x.device.type != "cuda":
            return contextlib.nullcontext()
        return torch.autocast(device_type="cuda", dtype=self.autocast_dtype)

    def cast_trunk(self, dtype: torch.dtype) -> "IResNet":
        """Cast the trunk's weights (``conv1`` .. ``bn2``) to ``dtype`` once; ``fc`` + ``features`` stay as they are.

        The "cast once" alternative to ``autocast_dtype``: the trunk then runs natively in ``dtype`` with no per-op
        casts of weights (inputs are converted on entry, the trunk output before ``fc``). Returns ``self``.
        """
        for module in (self.conv1, self.bn1, self.prelu, self.layer1, self.layer2, self.layer3, self.layer4,
                       self.bn2):
            module.to(dtype)
        return self

    def forward_trunk(self, x: torch.Tensor) -> torch.Tensor:
        """``[B,3,S,S]`` normalised RGB -> ``[B, 512 * (S/16)^2]`` flattened trunk output (before dropout/fc)."""
        if x.dtype != self.conv1.weight.dtype:  # a cast trunk (cast_trunk); no-op otherwise, so exports stay unchanged
            x = x.to(self.conv1.weight.dtype)
        x = self.prelu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.bn2(x), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B,3,S,S]`` normalised RGB -> ``[B, num_features]`` raw embedding.

        The ``fc``/``features`` head always runs outside autocast in the weights' dtype (float32 for loaded
        checkpoints), whether autocast comes from ``autocast_dtype`` or from the caller.
        """
        if not torch.jit.is_tracing() and (
                x.ndim != 4 or x.shape[1] != 3 or tuple(x.shape[-2:]) != (self.input_size, self.input_size)):
            raise ValueError(f"IResNet: expected [B, 3, {self.input_size}, {self.input_size}], "
                             f"got {tuple(x.shape)}")
        with self._autocast(x):
            x = self.dropout(self.forward_trunk(x))
        with torch.autocast(device_type=x.device.type, enabled=False):
            if x.dtype != self.fc.weight.dtype:
                x = x.to(self.fc.weight.dtype)
            return self.features(self.fc(x))


def iresnet(depth: int, **kwargs) -> IResNet:
    """Build an IResNet of a released depth (18, 34, 50, 100 or 200); ``kwargs`` go to :class:`IResNet`."""
    if depth not in IRESNET_LAYERS:
        raise ValueError(f"iresnet: unknown depth {depth}; choose one of {sorted(IRESNET_LAYERS)}")
    return IResNet(IRESNET_LAYERS[depth], **kwargs)
