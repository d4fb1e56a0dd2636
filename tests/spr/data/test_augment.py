"""The batch augmentation equals the per-image reference (torchvision, and the classic PIL
pipeline) for fixed random parameters, crops and flips as specified, and is reproducible with
seeded generators."""

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF1
from PIL import Image

from spr.data import Augment, augment_batch, augment_reference, draw_crop_flip
from spr.data._augment import pad_images

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
MEAN3, STD3 = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)


def batch(B, C, H, W, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (B, C, H, W), generator=g, dtype=torch.uint8)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(
    "C, H, W, pad_to, padding, mean, std",
    [
        (1, 28, 28, 32, 4, (0.286,), (0.353,)),  # Fashion-MNIST as the experiments use it
        (3, 32, 32, None, 4, MEAN3, STD3),  # CIFAR
        (3, 7, 5, 9, 2, (0.5,), (0.2,)),  # odd sizes, one statistic for all channels
        (2, 6, 6, None, 3, None, None),  # no normalisation
    ],
)
def test_batch_equals_per_image_reference(device, C, H, W, pad_to, padding, mean, std):
    B = 16
    x = batch(B, C, H, W)
    g = torch.Generator().manual_seed(1)
    shifts, flips = draw_crop_flip(B, padding, g)
    shifts[0], flips[0] = torch.tensor([-padding, padding]), True  # the extremes, surely
    shifts[1], flips[1] = torch.tensor([padding, -padding]), False
    out = augment_batch(
        x.to(device),
        shifts.to(device),
        flips.to(device),
        padding=padding,
        pad_to=pad_to,
        mean=mean,
        std=std,
    )
    assert out.device.type == device and out.dtype == torch.float32
    for i in range(B):
        top, left = padding + int(shifts[i, 0]), padding + int(shifts[i, 1])
        ref = augment_reference(
            x[i], top, left, bool(flips[i]), padding=padding, pad_to=pad_to, mean=mean, std=std
        )
        assert torch.equal(out[i].cpu(), ref), f"image {i}"  # bit for bit


def test_batch_equals_the_classic_pil_pipeline():
    """What experiments/bench_data.py's pipeline (a) does per image, with its parameters fixed."""
    B, padding, mean, std = 8, 4, 0.286, 0.353
    x = batch(B, 1, 28, 28, seed=3)
    shifts, flips = draw_crop_flip(B, padding, torch.Generator().manual_seed(4))
    out = augment_batch(x, shifts, flips, padding=padding, pad_to=32, mean=mean, std=std)
    for i in range(B):
        img = Image.fromarray(x[i, 0].numpy(), "L")
        img = TF1.pad(TF1.pad(img, 2), padding)  # Pad(2), then RandomCrop's padding
        img = TF1.crop(img, padding + int(shifts[i, 0]), padding + int(shifts[i, 1]), 32, 32)
        if flips[i]:
            img = TF1.hflip(img)
        ref = TF1.normalize(TF1.to_tensor(img), [mean], [std])
        assert torch.equal(out[i], ref), f"image {i}"


def test_zero_shift_is_flip():
    x = torch.rand(6, 3, 32, 32)
    zero = torch.zeros(6, 2, dtype=torch.long)
    assert torch.equal(augment_batch(x, zero, torch.ones(6, dtype=torch.bool)), x.flip(-1))
    assert torch.equal(augment_batch(x, zero, torch.zeros(6, dtype=torch.bool)), x)


def test_shift_matches_padded_crop():
    x = torch.rand(4, 2, 9, 7)
    shifts = torch.tensor([[1, -2], [-4, 4], [0, 3], [2, 0]])
    flips = torch.tensor([False, True, True, False])
    out = augment_batch(x, shifts, flips, padding=4)
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    for i, ((dy, dx), f) in enumerate(zip(shifts.tolist(), flips.tolist(), strict=True)):
        want = padded[i, :, 4 + dy : 4 + dy + 9, 4 + dx : 4 + dx + 7]
        assert torch.equal(out[i], want.flip(-1) if f else want)
    with pytest.raises(ValueError, match="shifts"):
        augment_batch(x, shifts * 2, flips, padding=4)


def test_uint8_and_float_images_agree_and_pad_to_is_padding_first():
    x = batch(10, 3, 8, 8)
    shifts, flips = draw_crop_flip(10, 4, torch.Generator().manual_seed(5))
    want = augment_batch(pad_images(x.float() / 255, 12), shifts, flips)
    assert torch.equal(augment_batch(x, shifts, flips, pad_to=12), want)
    assert torch.equal(augment_batch(x.float() / 255, shifts, flips, pad_to=12), want)


def test_no_random_parameters_is_pad_and_normalise():
    x = batch(4, 3, 5, 5)
    out = augment_batch(x, pad_to=7, mean=MEAN3, std=STD3)
    for i in range(4):
        assert torch.equal(out[i], augment_reference(x[i], pad_to=7, mean=MEAN3, std=STD3))


@pytest.mark.parametrize("device", DEVICES)
def test_seeded_generators_reproduce(device):
    x = batch(32, 1, 28, 28).to(device)
    aug = Augment(pad_to=32, mean=0.286, std=0.353)
    gen = lambda s: torch.Generator(device).manual_seed(s)  # noqa: E731 - on the device
    a, b, c = aug(x, gen(0)), aug(x, gen(0)), aug(x, gen(1))
    assert a.device.type == device and torch.equal(a, b) and not torch.equal(a, c)
    s1, f1 = draw_crop_flip(64, 4, gen(7))
    s2, f2 = draw_crop_flip(64, 4, gen(7))
    assert s1.device.type == device and torch.equal(s1, s2) and torch.equal(f1, f2)
    assert int(s1.abs().max()) == 4 and 0 < int(f1.sum()) < 64


def test_call_is_draw_then_apply_and_deterministic():
    x = batch(64, 3, 8, 8).float() / 255
    aug = Augment()  # crop + flip, no padding to size, no normalisation
    a = aug(x, torch.Generator().manual_seed(1))
    shifts, flips = draw_crop_flip(64, 4, torch.Generator().manual_seed(1))
    assert torch.equal(a, augment_batch(x, shifts, flips))
    assert torch.equal(a, aug(x, torch.Generator().manual_seed(1)))
    assert not torch.equal(a, aug(x, torch.Generator().manual_seed(2))) and not torch.equal(a, x)
    # flip-only and crop-only draw the same stream, then drop their half
    s, f = Augment(crop=False).draw(16, torch.Generator().manual_seed(0))
    assert not s.any() and torch.equal(
        f, draw_crop_flip(16, 4, torch.Generator().manual_seed(0))[1]
    )
    assert Augment(crop=False, flip=False).draw(16) is None


def test_bad_input():
    x = batch(2, 3, 4, 4)
    with pytest.raises(ValueError, match="shifts must lie in"):
        augment_batch(x, torch.tensor([[5, 0], [0, 0]]), torch.zeros(2, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"shifts must be \(2, 2\)"):
        augment_batch(x, torch.zeros(3, 2, dtype=torch.long), torch.zeros(2, dtype=torch.bool))
    with pytest.raises(ValueError, match="2 values for images of 3 channels"):
        augment_batch(x, mean=(0.1, 0.2), std=(1, 1))
    with pytest.raises(ValueError, match="both mean and std"):
        augment_batch(x, mean=0.5)
    with pytest.raises(ValueError, match="std must be > 0"):
        Augment(mean=0.5, std=0.0)
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        augment_batch(x[0])
    with pytest.raises(ValueError, match="uint8"):
        augment_batch(x.int())
    with pytest.raises(ValueError, match="pad_to must be at least"):
        augment_batch(x, pad_to=3)
    assert np.isclose(float(augment_batch(x[:, :1], mean=0.0, std=1.0).max()), x.max() / 255)
