"""Real architectures built in code, as ``nn.Sequential`` chains of blocks (no weights are downloaded).

    from experiments.torch_models import MODELS
    model, input_shape = MODELS["resnet18"](width=16, image=32, batch=2)

ResNet18 (basic residual blocks), VGG11 (configuration "A"), MobileNetV2 (inverted residuals, ReLU6) and
a GPT-2 style decoder (pre-norm blocks, causal attention, GELU MLP, dropout), each with the layer
structure of its paper and a ``width`` knob so that tests can run them small. Each top-level child is one
step of the chain: a residual block, a conv-BN-ReLU unit, a transformer block. Shared by the tests and the
benchmarks (``experiments/bench_torch.py``).
"""

from __future__ import annotations

import torch
from torch import nn


class _Basic(nn.Module):
    """ResNet's basic block: two 3x3 conv-BN, the identity (or a 1x1 projection) added, ReLU."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.down = None
        if stride != 1 or c_in != c_out:
            self.down = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x):
        h = torch.relu(self.bn1(self.conv1(x)))
        h = self.bn2(self.conv2(h))
        return torch.relu(h + (x if self.down is None else self.down(x)))


def resnet18(width: int = 64, image: int = 224, batch: int = 8, classes: int = 1000):
    """He et al. 2016, ResNet-18: stem, 4 stages of 2 basic blocks (widths w, 2w, 4w, 8w), pooled head."""
    torch.manual_seed(0)
    w = width
    layers: list[nn.Module] = [nn.Sequential(nn.Conv2d(3, w, 7, 2, 3, bias=False), nn.BatchNorm2d(w), nn.ReLU(),
                                             nn.MaxPool2d(3, 2, 1))]
    c = w
    for stage, c_out in enumerate((w, 2 * w, 4 * w, 8 * w)):
        layers += [_Basic(c, c_out, 1 if stage == 0 else 2), _Basic(c_out, c_out, 1)]
        c = c_out
    layers.append(nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, classes)))
    return nn.Sequential(*layers), (batch, 3, image, image)


def vgg11(width: int = 64, image: int = 224, batch: int = 8, classes: int = 1000):
    """Simonyan and Zisserman 2015, VGG configuration A (8 conv layers, widths w..8w) with BatchNorm."""
    torch.manual_seed(0)
    cfg = [1, "M", 2, "M", 4, 4, "M", 8, 8, "M", 8, 8, "M"]
    layers: list[nn.Module] = []
    c = 3
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(2))
        else:
            layers.append(nn.Sequential(nn.Conv2d(c, v * width, 3, 1, 1), nn.BatchNorm2d(v * width), nn.ReLU()))
            c = v * width
    hidden = 8 * width
    layers.append(nn.Sequential(nn.Flatten(), nn.Linear(c * (image // 32) ** 2, hidden), nn.ReLU(), nn.Dropout(0.5),
                                nn.Linear(hidden, classes)))
    return nn.Sequential(*layers), (batch, 3, image, image)


class _Inverted(nn.Module):
    """MobileNetV2's inverted residual: 1x1 expand, 3x3 depthwise, 1x1 linear projection (+ x if it fits)."""

    def __init__(self, c_in: int, c_out: int, stride: int, expand: int):
        super().__init__()
        hidden = c_in * expand
        parts: list[nn.Module] = []
        if expand != 1:
            parts += [nn.Conv2d(c_in, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6()]
        parts += [nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False), nn.BatchNorm2d(hidden),
                  nn.ReLU6(), nn.Conv2d(hidden, c_out, 1, bias=False), nn.BatchNorm2d(c_out)]
        self.body = nn.Sequential(*parts)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x):
        return x + self.body(x) if self.residual else self.body(x)


def mobilenet_v2(width: float = 1.0, image: int = 224, batch: int = 8, classes: int = 1000):
    """Sandler et al. 2018, MobileNetV2: the paper's table 2 of (expansion, channels, repeats, stride)."""
    torch.manual_seed(0)

    def ch(c):
        return max(8, int(c * width + 4) // 8 * 8)

    c = ch(32)
    layers: list[nn.Module] = [nn.Sequential(nn.Conv2d(3, c, 3, 2, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU6())]
    for t, c_out, n, s in ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                           (6, 160, 3, 2), (6, 320, 1, 1)):
        for i in range(n):
            layers.append(_Inverted(c, ch(c_out), s if i == 0 else 1, t))
            c = ch(c_out)
    last = ch(1280)
    layers.append(nn.Sequential(nn.Conv2d(c, last, 1, bias=False), nn.BatchNorm2d(last), nn.ReLU6(),
                                nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2), nn.Linear(last, classes)))
    return nn.Sequential(*layers), (batch, 3, image, image)


class GPTBlock(nn.Module):
    """A GPT-2 block: x + attn(ln(x)), then x + mlp(ln(x)); causal self-attention, GELU, dropout."""

    def __init__(self, d: int, heads: int, p: float = 0.1):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d), nn.Dropout(p))
        self.heads, self.p = heads, p

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        a = nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True,
                                                       dropout_p=self.p if self.training else 0.0)
        x = x + self.proj(a.transpose(1, 2).reshape(b, t, d))
        return x + self.mlp(self.ln2(x))


def gpt(d: int = 768, heads: int = 12, blocks: int = 12, seq: int = 256, batch: int = 4):
    """A GPT-2 style stack on embeddings (the input is the embedded sequence), final LayerNorm as a step."""
    torch.manual_seed(0)
    layers: list[nn.Module] = [GPTBlock(d, heads) for _ in range(blocks)]
    layers.append(nn.LayerNorm(d))
    return nn.Sequential(*layers), (batch, seq, d)


MODELS = {"resnet18": resnet18, "vgg11": vgg11, "mobilenet_v2": mobilenet_v2, "gpt": gpt}
