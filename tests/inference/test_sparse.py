"""Sparse executor and streaming recognizer: outputs equal the dense masked model, the counted work equals the
FLOPs engine, the streaming state is bounded."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from inference_helpers import random_masks, rel_err, tiny_model

from adafuse.flops import block_usage, dynamic_gflops_per_frame, static_cost
from adafuse.inference import StreamingNotSupportedError, StreamingRecognizer, frame_flops
from adafuse.inference.folding import FoldedConv
from adafuse.models import fusion_modules, inject_policy, set_num_frames

# (arch, input side): the smallest sides each backbone accepts keep these tests fast
FAMILIES = [
    ("adafuse_tsn_r18", 32),  # BasicBlock
    ("adafuse_tsn_r50", 32),  # Bottleneck (quota-rule shared policy layers)
    ("adafuse_tsn_bninception", 64),  # inception modules (gated concat, compact hand-over)
    ("adafuse_tsn_effb0", 32),  # MBConv (gated expansion, depthwise consumer)
    ("adafuse_tsn_efflite0", 32),  # MBConv without squeeze-excitation, ReLU6 (EfficientNet-Lite)
]
T, N = 4, 2


def dense_masked(model, x, masks):
    inject_policy(model, masks)
    try:
        with torch.no_grad():
            return model(x)
    finally:
        inject_policy(model, None)


@pytest.mark.parametrize("layerwise", [True, False], ids=["clip-mode", "frame-by-frame"])
@pytest.mark.parametrize("sparse", [True, False], ids=["sparse", "dense"])
@pytest.mark.parametrize("arch,size", FAMILIES)
def test_executor_equals_dense_masked_model(arch, size, sparse, layerwise, kernel_path):
    model = tiny_model(arch, num_frames=T)
    x = torch.randn(N, T, 3, size, size, generator=torch.Generator().manual_seed(1))
    masks = random_masks(model, N * T)
    ref = dense_masked(model, x, masks)
    out = StreamingRecognizer(model, sparse=sparse).recognize_clip(x, masks, layerwise=layerwise)
    assert rel_err(out, ref) <= 1e-5


@pytest.mark.parametrize("gemm_pixels", [0, 10**6], ids=["conv-only", "gemm-only"])
@pytest.mark.parametrize("arch,size", [("adafuse_tsn_r18", 32), ("adafuse_tsn_bninception", 64)])
def test_input_subset_paths_agree(arch, size, gemm_pixels, monkeypatch):
    """A conv reading an input-channel subset runs either as a sliced conv or as a GEMM on the unfolded input
    (small outputs, ``FoldedConv.GEMM_MAX_PIXELS``); force each path everywhere: same outputs, same work."""
    model = tiny_model(arch, num_frames=T)
    x = torch.randn(1, T, 3, size, size, generator=torch.Generator().manual_seed(7))
    masks = random_masks(model, T)
    default: list = []
    StreamingRecognizer(model).recognize_clip(x, masks, reports=default)
    monkeypatch.setattr(FoldedConv, "GEMM_MAX_PIXELS", gemm_pixels)
    forced: list = []
    out = StreamingRecognizer(model).recognize_clip(x, masks, reports=forced)
    assert rel_err(out, dense_masked(model, x, masks)) <= 1e-5
    assert [r.to_dict() for r in forced[0]] == [r.to_dict() for r in default[0]]


@pytest.mark.parametrize("arch,size", [("adafuse_tsn_r50", 32), ("adafuse_tsn_bninception", 64),
                                       ("adafuse_tsn_effb0", 32)])
def test_clip_mode_chunks_equal_frame_steps(arch, size, kernel_path):
    """Clip mode (layer by layer, batched policy) in chunks of 3, 1 and 2 frames continues the same stream as
    single steps: equal running logits, and per-frame reports (actions, channels, MACs, FLOPs) identical."""
    model = tiny_model(arch, num_frames=6)  # its own (decisive) policy: no injected masks
    x = torch.randn(6, 3, size, size, generator=torch.Generator().manual_seed(6))
    steps, chunks = StreamingRecognizer(model, by_layer=True), StreamingRecognizer(model, by_layer=True)
    step_reports, chunk_reports = [], []
    for t in range(6):
        running = steps.step(x[t])
        step_reports.append(steps.last_report)
    for lo, hi in ((0, 3), (3, 4), (4, 6)):
        chunked = chunks.step_clip(x[lo:hi])
        chunk_reports += chunks.last_reports
    assert rel_err(chunked, running) <= 1e-5
    assert chunks.frames == 6 and chunks.total_macs == steps.total_macs
    assert [r.to_dict() for r in chunk_reports] == [r.to_dict() for r in step_reports]
    gates = [g for r in chunk_reports for g in r.gates]
    assert min(sum(g.skip for g in gates), sum(g.keep for g in gates), sum(g.produced_prev for g in gates)) > 0


@pytest.mark.parametrize("mix", [(1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0), (0.5, 0.5, 0.0), (0.0, 0.5, 0.5)],
                         ids=["all-skip", "all-reuse", "all-keep", "skip-reuse", "reuse-keep"])
def test_degenerate_policies(mix):
    """Empty channel sets (nothing kept, nothing read by conv2, everything reused) take their own code paths."""
    model = tiny_model("adafuse_tsn_r18", num_frames=T)
    x = torch.randn(1, T, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    masks = random_masks(model, T, mix=mix)
    ref = dense_masked(model, x, masks)
    assert rel_err(StreamingRecognizer(model).recognize_clip(x, masks), ref) <= 1e-5


@pytest.mark.parametrize("arch,size", [("adafuse_tsn_r18", 32), ("adaskip_r18", 32), ("adafuse_tsn_effb0", 32),
                                       ("adafuse_tsn_efflite0", 32)])
def test_streaming_equals_clip_equals_dense_with_own_policy(arch, size):
    """The model's own argmax policy: running logits after t+1 frames == the dense clip model on those frames."""
    model = tiny_model(arch, num_frames=T)
    x = torch.randn(1, T, 3, size, size, generator=torch.Generator().manual_seed(3))
    rec = StreamingRecognizer(model)
    for t in range(T):
        running = rec.step(x[0, t])
        set_num_frames(model, t + 1)
        with torch.no_grad():
            ref = model(x[:, : t + 1])[0]
        assert rel_err(running, ref) <= 1e-5, f"frame {t}"
    set_num_frames(model, T)
    decisions = [f.last_mask.argmax(-1) for f in fusion_modules(model)]  # the dense model's T-frame policy
    clip = rec.recognize_clip(x)
    assert rel_err(clip[0], running) <= 1e-6
    for gate, dense_actions in zip(rec.last_report.gates, decisions, strict=True):
        counts = torch.bincount(dense_actions[-1], minlength=3).tolist()
        assert [gate.skip, gate.reuse, gate.keep] == counts, gate.name


@pytest.mark.parametrize("arch,size", [("adafuse_tsn_r18", 32), ("adafuse_tsn_r50", 32), ("adafuse_tsn_effb0", 32),
                                       ("adafuse_tsn_efflite0", 32)])
def test_counted_work_equals_flops_engine(arch, size, kernel_path):
    """Two independent paths: the executor counts the MACs of the sliced convs it ran; the FLOPs engine computes
    Eq. 5 from the masks. Per gate and frame, producers and consumers agree exactly, and so do the totals."""
    model = tiny_model(arch, num_frames=T)
    x = torch.randn(N, T, 3, size, size, generator=torch.Generator().manual_seed(4))
    masks = random_masks(model, N * T)
    cost = static_cost(model, size)
    reports: list = []
    StreamingRecognizer(model).recognize_clip(x, masks, reports=reports)  # clip mode
    framewise: list = []
    StreamingRecognizer(model).recognize_clip(x, masks, reports=framewise, layerwise=False)
    assert [[r.to_dict() for r in v] for v in framewise] == [[r.to_dict() for r in v] for v in reports]
    engine_frames = dynamic_gflops_per_frame(cost, masks, T).double() * 1e9
    for v in range(N):
        steps = reports[v]
        expected_total = [cost.floor] * T
        for b, (block, mask) in enumerate(zip(cost.blocks, masks, strict=True)):
            produce, consume = block_usage(mask[v * T:(v + 1) * T], T)
            for t in range(T):
                g = steps[t].gates[b]
                produced = g.produced + (steps[t + 1].gates[b].produced_prev if t + 1 < T else 0)
                assert produced == round(float(produce[0, t]) * block.channels)
                assert g.consumed == round(float(consume[0, t]) * block.channels)
                f1 = g.f1 + (steps[t + 1].gates[b].f1_prev if t + 1 < T else 0)
                assert f1 == block.f1 / block.channels * produced  # exact: integer-valued floats
                assert g.f2 == block.f2 / block.channels * g.consumed
                expected_total[t] += f1 + g.f2
        mine = frame_flops(steps)
        assert mine == pytest.approx(expected_total, rel=1e-12, abs=0)
        assert mine == pytest.approx(engine_frames[v].tolist(), rel=1e-6)  # the engine sums in float32


def test_dense_model_work_equals_static_cost():
    model = tiny_model("tsn_r50", num_frames=T)
    rec = StreamingRecognizer(model)
    rec.recognize_clip(torch.randn(1, T, 3, 32, 32))
    assert rec.total_flops == pytest.approx(static_cost(model, 32).total * T, rel=1e-12)


def test_bninception_work_per_layer():
    """BN-Inception: every conv's executed MACs equal its static cost restricted to the output channels it had to
    compute and the input channels it could read (thop convention: ``n_out x H x W x (n_in x k x k + bias)``).
    (The 1x1 and pool_proj convs are gated on both sides; the FLOPs engine's per-block linear formula charges
    them differently, see docs/inference.md, so the check here is per layer.)"""
    model = tiny_model("adafuse_tsn_bninception", num_frames=T)
    size = 64
    masks = random_masks(model, T)
    cost = static_cost(model, size)
    reports: list = []
    rec = StreamingRecognizer(model, by_layer=True)
    rec.recognize_clip(torch.randn(1, T, 3, size, size), masks, reports=reports)
    stages = rec.executor.stages[1:]  # the ten inception modules, one gate each, in fusion_modules order
    checked = 0
    for t in range(T):
        actions = [m[t].argmax(-1) for m in masks]
        for s, stage in enumerate(stages):
            need = actions[s] == 2  # channels of this frame computed: keep[t] or reuse[t+1]
            if t + 1 < T:
                need = need | (masks[s][t + 1].argmax(-1) == 1)
            readable = None  # channels of the previous module's gated output the consumers read
            if s > 0:
                readable = (actions[s - 1] == 2) | ((actions[s - 1] == 1) & (t > 0))
            for b, ops in enumerate(stage.branches):
                lo, hi = stage.ranges[b]
                for j, op in enumerate(ops):
                    if not hasattr(op, "weight"):
                        continue
                    conv = model.get_submodule(op.name)
                    k, bias = conv.kernel_size[0] * conv.kernel_size[1], int(conv.bias is not None)
                    spatial = cost.modules[op.name] / (conv.out_channels * (conv.in_channels * k + bias))
                    n_out, n_in = conv.out_channels, conv.in_channels
                    if j == len(ops) - 1:
                        n_out = int(need[lo:hi].sum())
                    reads_module_input = j == 0 or (j == 1 and not hasattr(ops[0], "weight"))
                    if reads_module_input and readable is not None:
                        n_in = int(readable.sum())
                    executed = reports[0][t].layers.get(op.name, 0.0)
                    if t + 1 < T:  # lazy producer work done at step t+1 belongs to frame t
                        executed += reports[0][t + 1].layers.get(op.name + "@prev", 0.0)
                    assert executed == n_out * spatial * (n_in * k + bias), (t, op.name)
                    checked += 1
    assert checked == T * sum(len([o for o in ops if hasattr(o, "weight")]) for st in stages for ops in st.branches)


def test_state_is_bounded_over_a_long_stream():
    """Many steps of a tiny model: the number of carried tensors is constant and their size has a fixed bound
    (per gate: one previous frame's conv1 output and conv1 input, GAP vector and index maps)."""
    model = tiny_model("adafuse_tsn_r18", num_frames=T)
    rec = StreamingRecognizer(model)
    gen = torch.Generator().manual_seed(5)
    frames = torch.randn(16, 3, 16, 16, generator=gen)
    counts, sizes = [], []
    for i in range(300):
        rec.step(frames[i % 16] + 0.1 * i % 3)
        state = rec.state_tensors()
        counts.append(len(state))
        sizes.append(sum(s.numel() * s.element_size() for s in state))
    assert rec.frames == 300 and len(set(counts[1:])) == 1
    bound = 0
    for gate in rec.executor.gates:
        y, x = gate.prev_y, gate.prev_src
        spatial = y.shape[0] if y.dim() == 2 else y.shape[2] * y.shape[3]  # NHWC rows (kernels) or (1, C, H, W)
        bound += gate.channels * spatial * y.element_size() + x.numel() * x.element_size()
        bound += gate.prev_v.numel() * 4 + gate.channels * (1 + 8)
    bound += rec.num_classes * 4
    assert max(sizes) <= bound


@pytest.mark.parametrize("arch", ["adafuse_tsm_r18", "adafuse_tsm_r50", "adafuse_tsm_last_r50"])
def test_tsm_models_run_sparsely_on_whole_clips_but_cannot_stream(arch, kernel_path):
    model = tiny_model(arch, num_frames=T)
    rec = StreamingRecognizer(model)
    assert not rec.streamable
    with pytest.raises(StreamingNotSupportedError, match="TSM shift"):
        rec.step(torch.randn(3, 32, 32))
    x = torch.randn(2, T, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    masks = random_masks(model, 2 * T)
    reports: list = []
    out = rec.recognize_clip(x, masks, reports=reports)
    assert not rec.last_clip_dense
    assert rel_err(out, dense_masked(model, x, masks)) <= 1e-5
    # the work is the FLOPs engine's count for the same masks (the shift is a free memory op)
    cost = static_cost(model, 32)
    engine = dynamic_gflops_per_frame(cost, masks, T).sum(dim=1) * 1e9
    assert [sum(frame_flops(r)) for r in reports] == pytest.approx(engine.tolist(), rel=1e-6)
    with pytest.raises(StreamingNotSupportedError, match="whole clips"):
        rec.step_clip(x[0])  # continues the stream of the last video: not a whole clip from a reset state


def test_bad_inputs_name_the_problem():
    model = tiny_model("adafuse_tsn_r18", num_frames=T)
    rec = StreamingRecognizer(model)
    with pytest.raises(ValueError, match=r"expected one frame"):
        rec.step(torch.randn(2, 3, 32, 32))
    with pytest.raises(ValueError, match=r"masks for 8 gates"):
        rec.step(torch.randn(3, 32, 32), [None])
    bad = [None] * 8
    bad[0] = F.one_hot(torch.zeros(5, dtype=torch.long), 3).float()
    with pytest.raises(ValueError, match=r"gate 0 \(layer1.0\).*expected \(64, 3\)"):
        rec.step(torch.randn(3, 32, 32), bad)
