"""Compiled channel-subset kernels: every instruction-set path equals PyTorch's convolution on the same channel
subsets; the executor's two paths (compiled, PyTorch fallback) agree at 1 and 2 threads; the fallback is chosen
by itself when the library is missing."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from inference_helpers import random_masks, rel_err, tiny_model

from adafuse.inference import StreamingRecognizer, kernels

pytestmark = pytest.mark.skipif(not kernels.available(), reason=kernels.status())

ISAS = kernels.ISA_NAMES[:kernels.ISA_NAMES.index(kernels.isa()) + 1] if kernels.available() else ()


@pytest.fixture(params=ISAS)
def isa(request):
    """Each instruction set this CPU can run (portable C, AVX2, AVX-512)."""
    used = kernels.set_isa(request.param)
    assert used == request.param
    yield used
    kernels.set_isa(None)


def nhwc_padded(x: torch.Tensor, padding: int) -> torch.Tensor:
    """``(C, H, W)`` -> the zero-padded NHWC frame ``((H+2p)*(W+2p), C)``."""
    return F.pad(x, (padding,) * 4).permute(1, 2, 0).reshape(-1, x.shape[0]).contiguous()


# (C_in, C_out, side, kernel, stride): the layer shapes of the ResNets, small, with ragged pixel and column tails
SHAPES = [(24, 40, 9, 3, 1), (24, 40, 9, 3, 2), (40, 70, 7, 1, 1), (40, 70, 8, 1, 2), (3, 16, 11, 7, 2),
          (33, 129, 5, 3, 1)]


@pytest.mark.parametrize("c_in,c_out,side,k,stride", SHAPES)
def test_input_subset_conv_equals_pytorch(isa, c_in, c_out, side, k, stride):
    gen = torch.Generator().manual_seed(c_in * 100 + k)
    w = torch.randn(c_out, c_in, k, k, generator=gen)
    b = torch.randn(c_out, generator=gen)
    x = torch.randn(c_in, side, side, generator=gen)
    present = torch.randperm(c_in, generator=gen)[: max(1, 2 * c_in // 3)]  # any order, as the gate hands them
    pad = k // 2
    ref = F.conv2d(x[present].unsqueeze(0), w[:, present], b, stride, pad)[0]
    residual = torch.randn(ref.shape[1] * ref.shape[2], c_out, generator=gen)
    out = torch.empty(ref.shape[1] * ref.shape[2], c_out)
    kernels.conv_subset(nhwc_padded(x[present], pad), (side, side), present.to(torch.int32), kernels.input_major(w),
                        c_in, (k, k), (stride, stride), (pad, pad), out, b, relu=True, residual=residual)
    expected = (ref.permute(1, 2, 0).reshape(-1, c_out) + residual).relu()
    assert rel_err(out, expected) <= 1e-5


@pytest.mark.parametrize("c_in,c_out,side,k,stride", SHAPES[:3])
def test_output_subset_conv_equals_pytorch(isa, c_in, c_out, side, k, stride):
    """Output channels chosen by packing the weight's columns; split over pixel-row ranges as threads do."""
    gen = torch.Generator().manual_seed(7 + k)
    w = torch.randn(c_out, c_in, k, k, generator=gen)
    b = torch.randn(c_out, generator=gen)
    x = torch.randn(c_in, side, side, generator=gen)
    ids = torch.sort(torch.randperm(c_out, generator=gen)[:c_out // 2]).values
    pad = k // 2
    ref = F.conv2d(x.unsqueeze(0), w[ids], b[ids], stride, pad)[0]
    pixels = ref.shape[1] * ref.shape[2]
    out = torch.full((pixels, ids.numel()), float("nan"))
    packed = kernels.pack_columns(kernels.input_major(w), ids)
    assert torch.equal(packed, kernels.input_major(w)[:, ids])
    for rows in [(0, pixels // 3), (pixels // 3, pixels)]:
        kernels.conv_subset(nhwc_padded(x, pad), (side, side), torch.arange(c_in, dtype=torch.int32), packed, c_in,
                            (k, k), (stride, stride), (pad, pad), out, b[ids].contiguous(), rows=rows)
    assert rel_err(out, ref.permute(1, 2, 0).reshape(pixels, -1)) <= 1e-5


def test_no_present_channel_gives_the_bias(isa):
    w, b = torch.randn(8, 6, 3, 3), torch.randn(8)
    out = torch.empty(16, 8)
    kernels.conv_subset(torch.empty(36, 0), (4, 4), torch.empty(0, dtype=torch.int32), kernels.input_major(w), 6,
                        (3, 3), (1, 1), (1, 1), out, b, relu=True)
    assert torch.equal(out, b.relu().expand(16, 8))


def test_gather_padded_places_columns_and_zeroes_the_border():
    src = torch.randn(12, 5)  # a 3 x 4 NHWC frame
    dst = torch.full((5 * 6, 4), float("nan"))
    kernels.gather_padded(dst, 0, src, None, 2, (3, 4), (1, 1))
    kernels.gather_padded(dst, 2, src, torch.tensor([4, 0], dtype=torch.int32), 2, (3, 4), (1, 1))
    expected = F.pad(src[:, [0, 1, 4, 0]].T.reshape(4, 3, 4), (1, 1, 1, 1)).permute(1, 2, 0).reshape(30, 4)
    assert torch.equal(dst, expected)


def test_bad_arguments_are_refused():
    w = kernels.input_major(torch.randn(8, 6, 3, 3))
    with pytest.raises(ValueError, match="padded frame"):
        kernels.conv_subset(torch.empty(16, 6), (4, 4), torch.arange(6, dtype=torch.int32), w, 6, (3, 3), (1, 1),
                            (1, 1), torch.empty(16, 8))
    with pytest.raises(TypeError, match="int32"):
        kernels.conv_subset(torch.empty(36, 6), (4, 4), torch.arange(6), w, 6, (3, 3), (1, 1), (1, 1),
                            torch.empty(16, 8))


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("arch", ["adafuse_tsn_r18", "adafuse_tsn_r50"])
def test_compiled_and_pytorch_executors_agree(arch, threads, monkeypatch):
    """Same logits and the same per-frame work reports from both paths, in clip mode and frame by frame."""
    torch.set_num_threads(threads)
    model = tiny_model(arch, num_frames=4)
    x = torch.randn(2, 4, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    masks = random_masks(model, 8)
    runs = {}
    for path in ("compiled", "pytorch"):
        if path == "pytorch":
            monkeypatch.setattr(kernels, "available", lambda: False)
        for layerwise in (True, False):
            reports: list = []
            out = StreamingRecognizer(model).recognize_clip(x, masks, reports=reports, layerwise=layerwise)
            runs[path, layerwise] = (out, [[r.to_dict() for r in video] for video in reports])
    ref, ref_reports = runs["pytorch", True]
    for key, (out, reports) in runs.items():
        assert rel_err(out, ref) <= 1e-5, key
        assert reports == ref_reports, key


def test_fallback_is_selected_when_the_library_is_missing(monkeypatch):
    monkeypatch.setattr(kernels, "_loaded", False)
    monkeypatch.setattr(kernels, "_lib", None)
    monkeypatch.setattr(kernels.importlib.util, "find_spec", lambda name: None)
    assert not kernels.available()
    assert kernels.status().startswith("pytorch fallback (the compiled kernels are not installed")
    model = tiny_model("adafuse_tsn_r18", num_frames=4)
    rec = StreamingRecognizer(model)
    assert not any(getattr(s, "use_kernels", False) for s in rec.executor.stages)
    x = torch.randn(1, 4, 3, 32, 32)
    assert rec.recognize_clip(x).shape == (1, model.num_classes)
