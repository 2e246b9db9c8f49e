"""ResNet backbone in detectron2's checkpoint layout (``stem``, ``res2``..``res5``).

GLEE-Lite uses R-50 with FrozenBN and the stride on the 3x3 conv (``STRIDE_IN_1X1: False``); the demo
model uses the same class with basic blocks and trainable BatchNorm.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from glee.model.config import BackboneConfig
from glee.model.layers import NormConv2d, make_norm


class BottleneckBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, norm: str) -> None:
        super().__init__()
        mid = cout // 4
        self.shortcut = (
            NormConv2d(cin, cout, 1, stride=stride, norm=make_norm(norm, cout)) if cin != cout else None
        )
        self.conv1 = NormConv2d(cin, mid, 1, norm=make_norm(norm, mid), activation=F.relu)
        self.conv2 = NormConv2d(
            mid, mid, 3, stride=stride, padding=1, norm=make_norm(norm, mid), activation=F.relu
        )
        self.conv3 = NormConv2d(mid, cout, 1, norm=make_norm(norm, cout))

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.shortcut is None else self.shortcut(x)
        return F.relu(self.conv3(self.conv2(self.conv1(x))) + identity)


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, norm: str) -> None:
        super().__init__()
        needs_proj = cin != cout or stride != 1
        self.shortcut = (
            NormConv2d(cin, cout, 1, stride=stride, norm=make_norm(norm, cout)) if needs_proj else None
        )
        self.conv1 = NormConv2d(
            cin, cout, 3, stride=stride, padding=1, norm=make_norm(norm, cout), activation=F.relu
        )
        self.conv2 = NormConv2d(cout, cout, 3, padding=1, norm=make_norm(norm, cout))

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.shortcut is None else self.shortcut(x)
        return F.relu(self.conv2(self.conv1(x)) + identity)


class Stem(nn.Module):
    """7x7/2 conv + norm + ReLU + 3x3/2 max-pool: stride 4."""

    def __init__(self, channels: int, norm: str) -> None:
        super().__init__()
        self.conv1 = NormConv2d(
            3, channels, 7, stride=2, padding=3, norm=make_norm(norm, channels), activation=F.relu
        )

    def forward(self, x: Tensor) -> Tensor:
        return F.max_pool2d(self.conv1(x), kernel_size=3, stride=2, padding=1)


class ResNet(nn.Module):
    """Returns ``{"res2": stride 4, "res3": 8, "res4": 16, "res5": 32}``."""

    stage_names = ("res2", "res3", "res4", "res5")

    def __init__(self, cfg: BackboneConfig) -> None:
        super().__init__()
        self.stem = Stem(cfg.stem_channels, cfg.norm)
        block = BottleneckBlock if cfg.block == "bottleneck" else BasicBlock
        cin = cfg.stem_channels
        for i, (name, depth, cout) in enumerate(
            zip(self.stage_names, cfg.depths, cfg.out_channels, strict=True)
        ):
            blocks = []
            for j in range(depth):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(block(cin, cout, stride, cfg.norm))
                cin = cout
            self.add_module(name, nn.Sequential(*blocks))
        self.out_channels = dict(zip(self.stage_names, cfg.out_channels, strict=True))

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        out = {}
        x = self.stem(x)
        for name in self.stage_names:
            x = getattr(self, name)(x)
            out[name] = x
        return out
