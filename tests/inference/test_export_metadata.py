"""``adafuse export`` stores the preprocessing and class names in the ONNX file, and the standalone script
``examples/onnx_predict.py`` (onnxruntime + NumPy + PyAV, no torch, no adafuse) classifies a video with it as
``adafuse predict --dense`` does."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from inference_helpers import checkpoint_with_config, video_with_list

from adafuse.cli import main
from adafuse.data.media import open_source
from adafuse.data.preprocessing import Preprocessing
from adafuse.inference import Predictor
from adafuse.inference.export import read_metadata

SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "onnx_predict.py"
CLASSES = ["waving", "clapping", "jumping", "sitting", "running", "reading", "drinking"]
T, SIZE, SCALE = 4, 32, 48


def _script():
    spec = importlib.util.spec_from_file_location("onnx_predict", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folder = tmp_path_factory.mktemp("export")
    video = video_with_list(folder, CLASSES)
    ckpt, pre = checkpoint_with_config(folder / "ckpt.pt", folder / "val.txt", CLASSES, T, SIZE, SCALE)
    out = folder / "tiny.onnx"
    assert main(["export", "--checkpoint", str(ckpt), "--onnx", str(out)]) == 0
    return out, ckpt, video, pre


def test_export_metadata_round_trips(exported):
    out, ckpt, _, pre = exported
    meta = read_metadata(out)
    assert meta["preprocessing"] == pre and meta["class_names"] == CLASSES and meta["arch"] == "adafuse_tsn_r18"
    props = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert json.loads(props["preprocessing"]) == pre.to_dict() and json.loads(props["class_names"]) == CLASSES
    assert pre.resize_short == SCALE  # the checkpoint's, not crop x 256/224


def test_onnx_script_matches_predict_dense(exported, capsys):
    out, ckpt, video, pre = exported
    script = _script()
    got = script.predict(str(out), str(video), topk=3)
    assert main(["predict", str(video), "--checkpoint", str(ckpt), "--dense", "--json"]) == 0
    dense = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert got["frame_indices"] == dense["frame_indices"] == pre.indices(12).tolist()
    assert got["top"][0][:2] == (dense["top"][0]["class"], dense["top"][0]["name"])
    # the script's clip is the library's clip, bit for bit; the logits then differ by the runtimes' rounding
    frames = open_source(video).read(got["frame_indices"])
    clip = script.preprocess(script.decode(str(video), np.array(got["frame_indices"])), json.loads(pre.to_json()))
    assert np.array_equal(clip, pre(frames).numpy())
    torch.testing.assert_close(torch.tensor(got["logits"]), torch.tensor(dense["logits"]), rtol=1e-4, atol=1e-5)


def test_onnx_script_resize_is_the_library_resize():
    """The script's fixed-point resize equals the library's uint8 resize (up, down, both orientations)."""
    script = _script()
    rng = np.random.default_rng(0)
    for h, w, short, crop in ((40, 48, 48, 32), (240, 320, 256, 224), (100, 73, 56, 56), (31, 50, 64, 60)):
        frame = rng.integers(0, 256, size=(1, h, w, 3), dtype=np.uint8)
        pre = Preprocessing(1, resize_short=short, crop_size=crop)
        expected = pre.crop_frames(frame)[0]
        assert np.array_equal(script.center_crop(script.resize_short(frame[0], short), crop), expected), (h, w)


def test_onnx_script_runs_alone(exported):
    """As a program: prints the top classes, and imports neither torch nor adafuse."""
    out, ckpt, video, _ = exported
    check = ("import sys, runpy; sys.argv = ['onnx_predict', sys.argv[1], sys.argv[2], '--topk', '2']\n"
             f"try:\n    runpy.run_path({str(SCRIPT)!r}, run_name='__main__')\n"
             "except SystemExit as e:\n    code = e.code\n"
             "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'adafuse'))\n"
             "print('imported:', bad); sys.exit(code)\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", check, str(out), str(video)], capture_output=True, text=True,
                          timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    expected = Predictor.from_checkpoint(ckpt, sparse=False).predict(video).top[0]
    lines = done.stdout.splitlines()
    assert lines[-1] == "imported: []"
    assert lines[1].split()[2] == expected[1] and sum(line.strip().startswith(("1.", "2.")) for line in lines) == 2
