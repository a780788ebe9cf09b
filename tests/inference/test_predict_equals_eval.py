"""``adafuse predict`` and ``adafuse eval`` turn the same video into the same clip and the same logits.

The checkpoint's short side (``data.scale_size`` 48) differs from ``crop x 256/224`` (36 for a 32 px crop), the
rule ``adafuse predict`` used before it took the checkpoint's preprocessing, so a predictor with its own rule
would fail here.
"""

from __future__ import annotations

import json

import pytest
import torch
from inference_helpers import checkpoint_with_config, video_with_list

from adafuse.cli import main
from adafuse.data.preprocessing import Preprocessing, default_resize
from adafuse.inference import Predictor
from adafuse.models.recognizer import VideoRecognizer

CLASSES = ["waving", "clapping", "jumping", "sitting", "running", "reading", "drinking"]
T, SIZE, SCALE = 4, 32, 48


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return video_with_list(tmp_path_factory.mktemp("eval_predict"), CLASSES)


def _checkpoint(video, tmp_path, sampling: str, stored: bool):
    return checkpoint_with_config(tmp_path / "ckpt.pt", video.parent / "val.txt", CLASSES, T, SIZE, SCALE,
                                  sampling, stored)


class _Logits:
    """Every clip batch a VideoRecognizer returns while active (global forward hook)."""

    def __enter__(self):
        self.outputs: list[torch.Tensor] = []

        def hook(module, args, output):
            if isinstance(module, VideoRecognizer):
                self.outputs.append(output.detach().clone())

        self.handle = torch.nn.modules.module.register_module_forward_hook(hook)
        return self

    def __exit__(self, *exc):
        self.handle.remove()


@pytest.mark.parametrize(("sampling", "stored"), [("tsn", True), ("dense", True), ("tsn", False)],
                         ids=["tsn", "dense", "legacy-checkpoint"])
def test_eval_and_predict_give_identical_logits(video, tmp_path, capsys, sampling, stored):
    ckpt, pre = _checkpoint(video, tmp_path, sampling, stored)
    assert pre.resize_short == SCALE != default_resize(SIZE)
    out = tmp_path / "eval"
    with _Logits() as seen:
        assert main(["eval", "--checkpoint", str(ckpt), "--out", str(out)]) == 0
    eval_logits = seen.outputs[-1]  # earlier calls: the FLOPs count on a dummy clip
    (record,) = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    metrics = json.loads((out / "metrics.json").read_text())
    assert Preprocessing.from_dict(metrics["preprocessing"]) == pre
    capsys.readouterr()

    assert main(["predict", str(video), "--checkpoint", str(ckpt), "--dense", "--json"]) == 0
    dense = json.loads(capsys.readouterr().out.splitlines()[-1])
    expected_frames = pre.indices(12).tolist()
    assert expected_frames == ([1, 4, 7, 10] if sampling == "tsn" else [2, 4, 6, 8])
    assert record["frame_indices"] == dense["frame_indices"] == expected_frames
    assert torch.equal(torch.tensor([dense["logits"]], dtype=torch.float32), eval_logits)
    assert [c["class"] for c in dense["top"]] == record["top5"]
    assert [c["prob"] for c in dense["top"]] == record["scores"]

    # the sparse executor and the stream see the same frames and clip (logits equal up to float rounding)
    predictor = Predictor.from_checkpoint(ckpt)
    assert predictor.preprocessing == pre
    for result in (predictor.predict(video), predictor.stream(video)):
        assert result.frame_indices == expected_frames
        torch.testing.assert_close(torch.tensor(result.logits), eval_logits[0], rtol=1e-5, atol=1e-6)


def test_predict_frames_and_size_overrides_keep_the_checkpoint_ratio(video, tmp_path):
    ckpt, pre = _checkpoint(video, tmp_path, "tsn", True)
    predictor = Predictor.from_checkpoint(ckpt, num_frames=3, size=24)
    assert predictor.preprocessing == Preprocessing(3, "tsn", 2, 36, 24, pre.mean, pre.std, pre.value_range, pre.bgr)
    result = predictor.predict(video)
    assert result.frame_indices == [2, 6, 10]
