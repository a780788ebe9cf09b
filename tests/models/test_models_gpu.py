"""CUDA forward of the dense (TSN) and adaptive (AdaFuse) models: the same logits and policy decisions as on
the CPU in float32. Marked ``gpu``: skipped without CUDA; run with ``pytest -m gpu``."""

from __future__ import annotations

import pytest
import torch

from adafuse.models import build_model, collect_masks, inject_policy, set_decision

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

N, T, SIZE = 2, 4, 64


@pytest.fixture(autouse=True)
def full_float32():
    """No TF32 in convs or matmuls: the GPU computes in the same precision as the CPU."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def pair(name: str, **kwargs) -> tuple[torch.nn.Module, torch.nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    cpu = build_model(name, num_classes=7, num_frames=T, **kwargs).eval()
    gpu = build_model(name, num_classes=7, num_frames=T, **kwargs)
    gpu.load_state_dict(cpu.state_dict())
    video = torch.randn(N, T, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    return cpu, gpu.cuda().eval(), video


@pytest.mark.parametrize("name", ["tsn_r18", "tsm_r18"])
def test_dense_models_match_the_cpu(name):
    cpu, gpu, video = pair(name, width=16)
    with torch.no_grad():
        expected = cpu(video)
        got = gpu(video.cuda()).cpu()
    assert got.shape == (N, 7)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", ["adafuse_tsn_r18", "adafuse_tsm_r18", "adafuse_tsn_effb0"])
def test_adafuse_models_take_the_same_decisions_and_logits_as_the_cpu(name):
    kwargs = {"width": 16} if "r18" in name else {}
    cpu, gpu, video = pair(name, **kwargs)
    for m in (cpu, gpu):
        set_decision(m, "argmax")
    with torch.no_grad():
        expected = cpu(video)
        cpu_masks = collect_masks(cpu)
        got = gpu(video.cuda()).cpu()
        gpu_masks = [m.cpu() for m in collect_masks(gpu)]
    assert len(gpu_masks) == len(cpu_masks) > 0
    for a, b in zip(gpu_masks, cpu_masks, strict=True):
        assert torch.equal(a, b)  # hard decisions: identical keep/reuse/skip per frame and channel
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    # the same injected masks give the same logits too (the masked computation itself)
    inject_policy(gpu, [m.cuda() for m in cpu_masks])
    with torch.no_grad():
        torch.testing.assert_close(gpu(video.cuda()).cpu(), expected, rtol=1e-4, atol=1e-4)
