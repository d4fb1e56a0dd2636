"""The binary ResNet baseline: float stem/head, binary 3x3 convs, counts by formula."""

import torch
import torch.nn.functional as F

from compress_extras.binary import BinaryConv2d, binary_resnet, count_ops


def test_binary_resnet_counts_and_gradients():
    model = binary_resnet(num_classes=10, in_channels=1, depth=8, width=8)
    convs = [m for m in model.modules() if isinstance(m, BinaryConv2d)]
    assert len(convs) == 6 and all(c.binary_input for c in convs)
    c = count_ops(model, (1, 32, 32))
    w = 8  # stages 32x32 (w), 16x16 (2w), 8x8 (4w), two binary 3x3 convs each
    bops = 9 * (w * w * 1024 * 2 + (w * 2 * w + 4 * w * w) * 256
                + (2 * w * 4 * w + 16 * w * w) * 64)
    assert c.bops == bops
    assert c.flops == 1 * w * 9 * 1024 + 4 * w * 10
    x, y = torch.randn(4, 1, 32, 32), torch.randint(0, 10, (4,))
    F.cross_entropy(model(x), y).backward()
    assert all(p.grad is not None for p in model.parameters())


def test_stem_stride_two_quarters_every_count_but_the_head():
    one = count_ops(binary_resnet(10, 1, 8, 8), (1, 32, 32))
    two = count_ops(binary_resnet(10, 1, 8, 8, stem_stride=2), (1, 32, 32))
    assert two.bops * 4 == one.bops and two.params == one.params
    head = 4 * 8 * 10  # Linear(32, 10) runs once per image at any resolution
    assert (two.flops - head) * 4 == one.flops - head
