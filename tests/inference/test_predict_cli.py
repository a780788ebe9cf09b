"""``adafuse predict`` and ``adafuse export`` on a tiny checkpoint and tiny generated videos."""

from __future__ import annotations

import json

import av
import numpy as np
import pytest
import torch
from inference_helpers import tiny_model
from PIL import Image

from adafuse.cli import main
from adafuse.inference import Predictor, check_onnx, export_onnx
from adafuse.models.recognizer import InputSpec
from adafuse.models.serialization import model_payload

CLASSES = ["waving", "clapping", "jumping", "sitting", "running", "reading", "drinking"]
T = 4
SIZE = 32


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    model = tiny_model("adafuse_tsn_r18", num_frames=T, num_classes=len(CLASSES))
    model.input_spec = InputSpec(size=SIZE)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    torch.save(model_payload(model, CLASSES), path)
    return path


def _frames(n: int = 12, h: int = 40, w: int = 48) -> np.ndarray:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    return np.stack([np.roll(base, 2 * i, axis=1) for i in range(n)])


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    frames = _frames()
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=12)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.fixture(scope="module")
def frame_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("frames") / "video_0001"
    folder.mkdir()
    for i, f in enumerate(_frames()):
        Image.fromarray(f).save(folder / f"{i + 1:05d}.jpg", quality=95)
    return folder


def _json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_predict_sparse_matches_dense_and_reports_savings(checkpoint, video, capsys):
    assert main(["predict", str(video), "--checkpoint", str(checkpoint), "--json"]) == 0
    sparse = _json_lines(capsys.readouterr().out)[0]
    assert main(["predict", str(video), "--checkpoint", str(checkpoint), "--json", "--dense"]) == 0
    dense = _json_lines(capsys.readouterr().out)[0]
    assert sparse["mode"] == "sparse" and dense["mode"] == "torch"
    assert sparse["frames"] == T and sparse["frame_indices"] == [1, 4, 7, 10]  # segment centres of 12 frames
    assert len(sparse["top"]) == 5 and all(c["name"] in CLASSES for c in sparse["top"])
    assert [c["class"] for c in sparse["top"]] == [c["class"] for c in dense["top"]]
    assert [c["prob"] for c in sparse["top"]] == pytest.approx([c["prob"] for c in dense["top"]], rel=1e-5)
    assert 0 < sparse["gflops"] < sparse["gflops_dense"] == pytest.approx(dense["gflops"])
    assert sparse["seconds"] > 0


def test_predict_text_output_and_frame_folder(checkpoint, video, frame_folder, capsys):
    assert main(["predict", str(video), str(frame_folder), "--checkpoint", str(checkpoint), "--topk", "3"]) == 0
    out = capsys.readouterr().out
    assert out.count("GFLOPs (dense") == 2 and "frames, sparse" in out
    assert sum(line.strip().startswith(("1.", "2.", "3.")) for line in out.splitlines()) == 6
    assert not any(line.strip().startswith("4.") for line in out.splitlines())


def test_predict_stream_writes_per_frame_per_block_accounting(checkpoint, video, tmp_path, capsys):
    jsonl = tmp_path / "steps.jsonl"
    assert main(["predict", str(video), "--checkpoint", str(checkpoint), "--stream", "--every", "3",
                 "--jsonl", str(jsonl)]) == 0
    out = capsys.readouterr().out
    assert out.count("running top-1") == 4  # frames 0, 3, 6, 9 of 12
    records = [json.loads(line) for line in jsonl.read_text().splitlines()]
    frames = [r for r in records if r["type"] == "frame"]
    (summary,) = [r for r in records if r["type"] == "video"]
    assert [r["frame_index"] for r in frames] == [0, 3, 6, 9]
    assert all(len(r["blocks"]) == 8 for r in frames)  # the 8 gated blocks of ResNet-18
    block = frames[1]["blocks"][0]
    assert block["name"] == "layer1.0" and block["skip"] + block["reuse"] + block["keep"] == 64
    assert block["produced"] == block["keep"] and block["consumed"] <= block["reuse"] + block["keep"]
    assert sum(r["gflops"] for r in frames) == pytest.approx(summary["gflops"], rel=1e-9)


def test_predict_reports_unreadable_videos(checkpoint, tmp_path, capsys):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"not a video")
    assert main(["predict", str(bad), "--checkpoint", str(checkpoint)]) == 1
    assert "broken.mp4" in capsys.readouterr().err


def test_stream_api_equals_clip_mode(checkpoint, video):
    predictor = Predictor.from_checkpoint(checkpoint)
    clip = predictor.predict(video)
    stream = predictor.stream(video)
    assert stream.frame_indices == clip.frame_indices
    assert stream.logits == pytest.approx(clip.logits, rel=1e-5, abs=1e-7)
    assert stream.gflops == pytest.approx(clip.gflops, rel=1e-12)


def test_export_onnx_matches_onnxruntime(checkpoint, tmp_path, capsys):
    out = tmp_path / "tiny.onnx"
    assert main(["export", "--checkpoint", str(checkpoint), "--onnx", str(out)]) == 0
    text = capsys.readouterr().out
    assert out.is_file() and ": OK" in text


def test_export_check_detects_a_different_model(tmp_path):
    """The onnxruntime check compares against the model it is given: a different model must fail it."""
    model = tiny_model("adafuse_tsn_r18", num_frames=2, num_classes=3)
    model.input_spec = InputSpec(size=SIZE)
    path = export_onnx(model, tmp_path / "a.onnx").path
    assert check_onnx(model, path).ok
    other = tiny_model("adafuse_tsn_r18", num_frames=2, num_classes=3, seed=1)
    assert not check_onnx(other, path).ok


def _webm(path, n=12):
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libvpx-vp9", rate=12)
        stream.width, stream.height, stream.pix_fmt = 48, 40, "yuv420p"
        stream.options = {"deadline": "realtime", "cpu-used": "8"}
        for f in _frames(n):
            for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def test_predict_refuses_damaged_sources(checkpoint, frame_folder, tmp_path, capsys):
    full = _webm(tmp_path / "full.webm")
    with av.open(str(full)) as c:
        offsets = [p.pos for p in c.demux(c.streams.video[0]) if p.size > 0]
    cut = tmp_path / "cut.webm"
    cut.write_bytes(full.read_bytes()[: offsets[-3]])  # 3 of 12 frames lost; the header still declares 12
    gap = tmp_path / "gap"
    import shutil

    shutil.copytree(frame_folder, gap)
    (gap / "00005.jpg").unlink()
    for source, word in ((cut, "truncated"), (gap, "gap")):
        for extra in ([], ["--stream"], ["--stream", "--every", "2"]):
            assert main(["predict", str(source), "--checkpoint", str(checkpoint), *extra]) == 1
            err = capsys.readouterr().err
            assert word in err and source.name in err, (source, extra, err)
    assert main(["predict", str(full), "--checkpoint", str(checkpoint)]) == 0


def test_predict_uses_the_checkpoint_frame_template_and_start(tmp_path, frame_folder, capsys):
    model = tiny_model("adafuse_tsn_r18", num_frames=T, num_classes=len(CLASSES))
    model.input_spec = InputSpec(size=SIZE)
    payload = model_payload(model, CLASSES)
    payload["config"] = {"data": {"frame_template": "img_{:04d}.png", "frame_start": 0}}
    ckpt = tmp_path / "img.pt"
    torch.save(payload, ckpt)
    folder = tmp_path / "img_folder"
    folder.mkdir()
    for i, f in enumerate(_frames()):
        Image.fromarray(f).save(folder / f"img_{i:04d}.png")
    assert main(["predict", str(folder), "--checkpoint", str(ckpt), "--json"]) == 0
    got = _json_lines(capsys.readouterr().out)[0]
    assert got["frames"] == T and got["frame_indices"] == [1, 4, 7, 10]
    # the 1-based {:05d}.jpg folder needs the flags against this checkpoint, and gives the same frames
    assert main(["predict", str(frame_folder), "--checkpoint", str(ckpt), "--json"]) == 1
    assert "img_0000.png" in capsys.readouterr().err
    assert main(["predict", str(frame_folder), "--checkpoint", str(ckpt), "--json", "--template", "{:05d}.jpg",
                 "--frame-start", "1"]) == 0
    assert _json_lines(capsys.readouterr().out)[0]["frame_indices"] == [1, 4, 7, 10]


def test_predict_refuses_non_finite_logits_and_bad_checkpoints(tmp_path, video, capsys):
    model = tiny_model("adafuse_tsn_r18", num_frames=T, num_classes=len(CLASSES))
    model.input_spec = InputSpec(size=SIZE)
    bn = next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    saved = bn.running_var.clone()
    bn.running_var.fill_(float("inf"))  # what a diverged training leaves in BatchNorm
    bad = tmp_path / "inf.pt"
    torch.save(model_payload(model, CLASSES), bad)
    for extra in ([], ["--dense"]):
        assert main(["predict", str(video), "--checkpoint", str(bad), *extra]) == 2
        assert "running_var" in capsys.readouterr().err
    bn.running_var.copy_(saved)
    fc = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
    fc.weight.data.fill_(3e38)  # finite weights whose logits overflow
    torch.save(model_payload(model, CLASSES), bad)
    assert main(["predict", str(video), "--checkpoint", str(bad), "--dense"]) == 1
    assert "non-finite logits" in capsys.readouterr().err
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x00" * 200)
    assert main(["predict", str(video), "--checkpoint", str(junk)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "junk.pt is not a readable checkpoint" in err
