from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from adafuse.data.transforms import (
    BNINCEPTION_MEAN,
    IMAGENET_MEAN,
    IMAGENET_STD,
    STHV1_FLIP_PAIRS,
    CenterCrop,
    HorizontalFlip,
    MultiScaleCrop,
    Normalize,
    ResizeShort,
    ThreeCrop,
    eval_transform,
    multiscale_crop_box,
    to_clip,
    train_transform,
)


def gradient_clip(t=8, h=120, w=160):
    """Frame i = the same 2-D ramp image plus i (so any crop difference between frames shows)."""
    ys, xs = np.mgrid[0:h, 0:w]
    base = (xs + 2 * ys) % 200
    return np.stack([base + i for i in range(t)])[..., None].repeat(3, -1).astype(np.uint8)


def test_same_crop_for_every_frame():
    clip = gradient_clip()
    rng = np.random.default_rng(0)
    for _ in range(20):
        out, _ = MultiScaleCrop(56).apply(to_clip(clip), None, rng)
        assert out.shape == (8, 3, 56, 56)
        diffs = out.float() - out[0].float()
        for i in range(8):  # every frame is frame 0 shifted by exactly i grey levels
            assert torch.allclose(diffs[i], torch.full_like(diffs[i], float(i)), atol=1.0)


def test_multiscale_boxes_inside_frame_and_on_fixed_grid():
    rng = np.random.default_rng(1)
    sides = {int(240 * s) for s in (1, 0.875, 0.75, 0.66)} | {224}
    for _ in range(300):
        top, left, ch, cw = multiscale_crop_box(240, 320, (224, 224), (1, 0.875, 0.75, 0.66), rng)
        assert 0 <= top and top + ch <= 240 and 0 <= left and left + cw <= 320
        assert ch in sides and cw in sides
        hs, ws = (240 - ch) // 4, (320 - cw) // 4
        assert (hs == 0 or top % hs == 0) and (ws == 0 or left % ws == 0)


def test_flip_swaps_labels_in_pairs():
    clip = to_clip(gradient_clip(t=2))
    flip = HorizontalFlip(1.0, STHV1_FLIP_PAIRS)
    rng = np.random.default_rng(0)
    out, label = flip.apply(clip, 2, rng)
    assert label == 4 and torch.equal(out, clip.flip(-1))
    assert flip.apply(clip, 41, rng)[1] == 30
    assert flip.apply(clip, 7, rng)[1] == 7
    out, label = HorizontalFlip(0.0, STHV1_FLIP_PAIRS).apply(clip, 2, rng)
    assert label == 2 and torch.equal(out, clip)


def test_train_transform_flip_changes_label_only_when_flipped():
    clip = gradient_clip(t=4, h=64, w=64)
    tf = train_transform(32, scales=(1.0,), flip=True, flip_label_swap=[(0, 1)])
    rng = np.random.default_rng(3)
    seen = set()
    for _ in range(30):
        video, label = tf.apply(clip, 0, rng)
        flipped = video[0, 0, 0, 0] > video[0, 0, 0, -1]  # the ramp increases to the right unless flipped
        assert label == (1 if flipped else 0)
        seen.add(label)
    assert seen == {0, 1}


def test_normalisations():
    clip = np.zeros((1, 4, 4, 3), np.uint8)
    clip[..., 0], clip[..., 1], clip[..., 2] = 255, 128, 0
    img = Normalize()(clip)
    expected = [(1.0 - IMAGENET_MEAN[0]) / IMAGENET_STD[0], (128 / 255 - IMAGENET_MEAN[1]) / IMAGENET_STD[1],
                (0 - IMAGENET_MEAN[2]) / IMAGENET_STD[2]]
    assert img.dtype == torch.float32 and img.shape == (1, 3, 4, 4)
    assert torch.allclose(img[0, :, 0, 0], torch.tensor(expected), atol=1e-5)
    bgr = Normalize(BNINCEPTION_MEAN, (1, 1, 1), value_range=255, bgr=True)(clip)
    assert torch.allclose(bgr[0, :, 0, 0], torch.tensor([0 - 104.0, 128 - 117.0, 255 - 128.0]))


class Spec:  # duck-typed model input spec
    mean = (0.5, 0.5, 0.5)
    std = (0.5, 0.5, 0.5)
    value_range = 1.0
    bgr = False


def test_presets_shapes_and_inputs():
    arr = np.random.default_rng(0).integers(0, 255, (8, 240, 320, 3), dtype=np.uint8)
    pil = [Image.fromarray(a) for a in arr]
    tr = train_transform(224)
    assert tr(arr).shape == (8, 3, 224, 224) and tr(pil).shape == (8, 3, 224, 224)
    ev = eval_transform(224)
    a, b = ev(arr), ev(pil)
    assert a.shape == (8, 3, 224, 224) and torch.equal(a, b) and a.is_contiguous()
    three = eval_transform(112, three_crop=True)
    assert three(arr).shape == (3, 8, 3, 112, 112) and three.num_views == 3
    spec = eval_transform(64, normalize=Spec())(arr)
    assert spec.min() >= -1 and spec.max() <= 1
    raw = eval_transform(64, normalize="none")(arr)
    assert raw.dtype == torch.float32 and raw.max() > 1


def test_resize_short_and_center_crop_geometry():
    clip = to_clip(gradient_clip(t=2, h=100, w=176))
    out, _ = ResizeShort(256).apply(clip, None, None)
    assert out.shape[-2:] == (256, 450)
    cropped, _ = CenterCrop(224).apply(out, None, None)
    assert cropped.shape[-2:] == (224, 224)
    with pytest.raises(ValueError, match="larger than the frame"):
        CenterCrop(300).apply(out, None, None)
    views, _ = ThreeCrop(100).apply(clip, None, None)
    assert views.shape == (3, 2, 3, 100, 100)
    assert torch.equal(views[0], clip[..., :, :100]) and torch.equal(views[2], clip[..., :, 76:])


def test_upscaling_small_frames():
    clip = gradient_clip(t=2, h=100, w=132)  # SthV1 frames are 100 px high
    assert train_transform(224)(clip).shape == (2, 3, 224, 224)
