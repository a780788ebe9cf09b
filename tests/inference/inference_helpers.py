"""Shared helpers of the inference tests: small models with non-trivial BN statistics and random policies."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from adafuse.models import build_model, fusion_modules
from adafuse.models.fusion import PolicyNet

STHV1_MIX = (0.37, 0.26, 0.37)  # (skip, reuse, keep)


def randomize_bn(model: nn.Module, generator: torch.Generator) -> None:
    """Give every BatchNorm non-trivial statistics and affine parameters (so that folding is exercised)."""
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            c = m.num_features
            m.running_mean.copy_(torch.rand(c, generator=generator) * 0.4 - 0.2)
            m.running_var.copy_(torch.rand(c, generator=generator) * 1.5 + 0.5)
            if m.weight is not None:
                m.weight.data.copy_(torch.rand(c, generator=generator) + 0.5)
                m.bias.data.copy_(torch.rand(c, generator=generator) * 0.4 - 0.2)


def decisive_policies(model: nn.Module, generator: torch.Generator, scale: float = 10.0) -> None:
    """Make the learned policies' argmax far from ties (large random output biases, weights that still
    matter), so that float rounding differences between two execution paths cannot flip a decision."""
    for m in model.modules():
        if isinstance(m, PolicyNet):
            h = m.fc1.weight.shape[1]
            m.fc0.weight.data.copy_(torch.randn(m.fc0.weight.shape, generator=generator) / m.fc0.weight.shape[1] ** 0.5)
            m.fc1.weight.data.copy_(torch.randn(m.fc1.weight.shape, generator=generator) * 2.0 / h ** 0.5)
            m.fc1.bias.data.copy_(torch.randn(m.fc1.bias.shape, generator=generator) * scale)


def tiny_model(arch: str, num_frames: int = 4, num_classes: int = 7, seed: int = 0) -> nn.Module:
    """A registered model in eval mode with randomized BN and a readable classifier (N(0, 0.05) weights)."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = build_model(arch, num_classes=num_classes, num_frames=num_frames).eval()
    randomize_bn(model, gen)
    decisive_policies(model, gen)
    model.head.fc.weight.data.copy_(torch.randn(model.head.fc.weight.shape, generator=gen) * 0.05)
    return model


def random_masks(model: nn.Module, rows: int, mix=STHV1_MIX, seed: int = 0) -> list[torch.Tensor]:
    """One i.i.d. random one-hot ``(rows, C, 3)`` (skip, reuse, keep) mask per fusion module."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for f in fusion_modules(model):
        a = torch.multinomial(torch.tensor(mix), rows * f.channels, replacement=True, generator=gen)
        out.append(F.one_hot(a.view(rows, f.channels), 3).float())
    return out


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def video_with_list(folder: Path, classes: list[str], frames: int = 12) -> Path:
    """``folder/clip.mp4`` (``frames`` 40x48 frames of a moving random texture, mpeg4) with ``folder/val.txt``
    (that video, label 2) and ``folder/classes.txt``; returns the video's path."""
    import av

    path = folder / "clip.mp4"
    base = np.random.default_rng(1).integers(0, 256, size=(40, 48, 3), dtype=np.uint8)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=12)
        stream.width, stream.height, stream.pix_fmt = 48, 40, "yuv420p"
        for i in range(frames):
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.roll(base, 3 * i, axis=1), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    (folder / "val.txt").write_text("clip.mp4 2\n")
    (folder / "classes.txt").write_text("\n".join(classes) + "\n")
    return path


def checkpoint_with_config(path: Path, val_list: Path, classes: list[str], num_frames: int, size: int,
                           scale_size: int, sampling: str = "tsn", stored: bool = True):
    """A tiny AdaFuse-R18 checkpoint as the trainer writes it (model payload + config + preprocessing; without
    ``preprocessing`` when ``stored`` is False, as a checkpoint from before that key). Returns
    ``(path, its Preprocessing)``."""
    from adafuse.config import Config
    from adafuse.data.preprocessing import Preprocessing
    from adafuse.models.recognizer import InputSpec
    from adafuse.models.serialization import model_payload

    model = tiny_model("adafuse_tsn_r18", num_frames=num_frames, num_classes=len(classes))
    model.input_spec = InputSpec(size=size)
    cfg = Config.from_dict({
        "model": {"name": "adafuse_tsn_r18", "num_frames": num_frames},
        "data": {"val_list": str(val_list), "input_size": size, "scale_size": scale_size, "sampling": sampling,
                 "dense_stride": 2, "num_workers": 0},
        "eval": {"batch_size": 1},
        "run": {"name": "x", "out_dir": str(path.parent), "progress": False, "tensorboard": False},
    })
    pre = Preprocessing.from_config(cfg, model.input_spec)
    payload = model_payload(model, classes, pre.to_dict() if stored else None)
    payload["config"] = cfg.to_dict()
    torch.save(payload, path)
    return path, pre
