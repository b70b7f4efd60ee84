"""Analytic costs of the blocks that ``_blocks.py`` builds, without torch.

Each function mirrors one module of ``searchers.spaces._blocks`` call for call, using the
rules of :mod:`searchers.costs`, so a look-up table built from these numbers equals what
``searchers.costs.measure`` counts on the built model (the tests compare them exactly).
"""

from __future__ import annotations

from searchers import costs as C


def se_channels(block_input: int) -> int:
    """Squeeze-excite bottleneck width: a quarter of the *block input* channels (at least 1),
    the MnasNet / EfficientNet convention. It does not depend on the expansion, so the
    largest block's SE weights crop (leading slice of the expanded dim) onto any smaller one.
    """
    return max(1, block_input // 4)


def conv_bn_act(c_in: int, c_out: int, kernel: int, h: int, w: int, stride: int = 1,
                groups: int = 1, act: bool = True) -> tuple[C.LayerCost, int, int]:
    """``ConvBNAct``: conv (no bias) + BatchNorm + optional ReLU6."""
    conv, h_out, w_out = C.conv2d(c_in, c_out, kernel, h, w, stride=stride, groups=groups)
    cost = conv + C.batchnorm(c_out, h_out, w_out)
    if act:
        cost = cost + C.activation(c_out * h_out * w_out)
    return cost, h_out, w_out


def squeeze_excite(channels: int, reduced: int, h: int, w: int) -> C.LayerCost:
    """``SqueezeExcite``: global pool, 1x1 reduce (bias) + ReLU, 1x1 expand (bias) + sigmoid,
    channel-wise multiply."""
    cost = C.global_pool(channels, h, w)
    cost = cost + C.conv2d(channels, reduced, 1, 1, 1, bias=True)[0] + C.activation(reduced)
    cost = cost + C.conv2d(reduced, channels, 1, 1, 1, bias=True)[0] + C.activation(channels)
    return cost + C.channel_scale(channels, h, w)


def inverted_residual(c_in: int, c_out: int, h: int, w: int, *, expansion: int, kernel: int,
                      stride: int, se: bool = False, groups_expand: int = 1,
                      groups_project: int = 1) -> tuple[C.LayerCost, int, int]:
    """``InvertedResidual``: [1x1 (group) expand + BN + ReLU6] (absent when expansion is 1),
    kxk depthwise + BN + ReLU6, [squeeze-excite], 1x1 (group) project + BN, and a residual add
    when the stride is 1 and the widths match. Channel shuffle (after a group expansion) is free.
    """
    expanded = c_in * expansion
    cost = C.LayerCost()
    if expansion != 1:
        cost, h, w = conv_bn_act(c_in, expanded, 1, h, w, groups=groups_expand)
    dw, h_out, w_out = conv_bn_act(expanded, expanded, kernel, h, w, stride=stride,
                                   groups=expanded)
    cost = cost + dw
    if se:
        cost = cost + squeeze_excite(expanded, se_channels(c_in), h_out, w_out)
    cost = cost + conv_bn_act(expanded, c_out, 1, h_out, w_out, groups=groups_project,
                              act=False)[0]
    if stride == 1 and c_in == c_out:
        cost = cost + C.residual_add(c_out * h_out * w_out)
    return cost, h_out, w_out


def classifier_head(c_in: int, c_head: int, h: int, w: int, num_classes: int) -> C.LayerCost:
    """``1x1 conv + BN + ReLU6`` to ``c_head`` (skipped when ``c_head`` is 0), global average
    pool, flatten, linear classifier."""
    cost = C.LayerCost()
    if c_head:
        cost, h, w = conv_bn_act(c_in, c_head, 1, h, w)
        c_in = c_head
    return cost + C.global_pool(c_in, h, w) + C.linear(c_in, num_classes)
