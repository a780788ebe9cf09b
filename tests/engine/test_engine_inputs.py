"""Every input file of a run is checked before training or evaluation starts: one line naming the config key
and the file, exit code 2, nothing built or written (no DataLoader worker traceback for a wrong data.root)."""

from __future__ import annotations

import shutil

import pytest
import torch
from conftest import tiny_config, write_config

from adafuse.cli import main as cli_main
from adafuse.config import Config
from adafuse.engine.data import check_inputs
from adafuse.engine.distributed import DistInfo
from adafuse.engine.trainer import Trainer


def run(argv: list[str], capsys) -> tuple[int, str]:
    threads = torch.get_num_threads()
    try:
        code = cli_main(argv)
    finally:
        torch.set_num_threads(threads)
    return code, capsys.readouterr().err


def train_with(synth, tmp_path, capsys, **data) -> tuple[int, str]:
    cfg = tiny_config(synth, tmp_path, "run", data={"num_workers": 2, **data})
    return run(["train", str(write_config(tmp_path / "c.yaml", cfg))], capsys)


def test_wrong_data_root_is_one_line_before_anything_starts(engine_synth, tmp_path, capsys):
    wrong = tmp_path / "elsewhere"
    wrong.mkdir()
    code, err = train_with(engine_synth, tmp_path, capsys, root=str(wrong))
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    first = open(engine_synth.train_frames).readline().split()[0]
    assert f"{wrong}/{first} not found" in lines[0]
    assert f"{engine_synth.train_frames}:1" in lines[0] and f"data.root={wrong}" in lines[0]
    assert not (tmp_path / "run").exists()  # no run directory, lock or log written

    code, err = train_with(engine_synth, tmp_path, capsys, root=str(tmp_path / "nowhere"))
    assert code == 2 and err.strip() == f"adafuse train: error: data.root: no such directory {tmp_path / 'nowhere'}"


@pytest.mark.parametrize("key", ["train_list", "val_list", "classes"])
def test_missing_list_or_classes_file_names_its_key(engine_synth, tmp_path, capsys, key):
    missing = str(tmp_path / "no" / f"{key}.txt")
    code, err = train_with(engine_synth, tmp_path, capsys, **{key: missing})
    assert code == 2 and err.strip() == f"adafuse train: error: data.{key}: no such file {missing}"


def test_missing_pretrained_file_names_it(engine_synth, tmp_path, capsys):
    cfg = tiny_config(engine_synth, tmp_path, "run", model={"pretrained": str(tmp_path / "r18.pth")})
    code, err = run(["train", str(write_config(tmp_path / "c.yaml", cfg))], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert f"model.pretrained: no such file {tmp_path / 'r18.pth'}" in err


def test_frame_template_is_checked_on_the_first_entries(engine_synth, tmp_path, capsys):
    code, err = train_with(engine_synth, tmp_path, capsys, frame_template="img_{:05d}.jpg")
    assert code == 2 and "img_00001.jpg not found" in err and "data.frame_template" in err
    assert len(err.strip().splitlines()) == 1


def test_skip_mode_tolerates_some_missing_entries_but_not_all(engine_synth, tmp_path):
    lines = open(engine_synth.train_frames).read().splitlines()
    root = str(tmp_path / "data")
    shutil.copytree(engine_synth.root + "/frames", root + "/frames")
    lst = tmp_path / "train.txt"
    lst.write_text("".join(f"{x}\n" for x in ["frames/gone 10 0", *lines[1:]]))
    base = tiny_config(engine_synth, tmp_path, "run", data={"root": root, "train_list": str(lst), "val_list": "",
                                                            "classes": engine_synth.classes})
    with pytest.raises(FileNotFoundError, match=r"frames/gone not found \(listed at .*train.txt:1\)"):
        check_inputs(Config.from_dict(base))
    base["data"]["on_error"] = "skip"
    check_inputs(Config.from_dict(base))  # one of three missing: what skip is for
    lst.write_text("".join(f"frames/gone_{i} 10 0\n" for i in range(3)) + lines[3] + "\n")
    with pytest.raises(FileNotFoundError, match=r"gone_0 not found"):
        check_inputs(Config.from_dict(base))


def test_eval_checks_the_validation_data_of_the_checkpoint(engine_synth, tmp_path, capsys):
    cfg = Config.from_dict(tiny_config(engine_synth, tmp_path, "ev", data={"val_list": ""}))
    trainer = Trainer(cfg, DistInfo())
    threads = torch.get_num_threads()
    try:
        trainer.setup()
        trainer.save()
    finally:
        torch.set_num_threads(threads)
        trainer.close()
    ckpt = str(trainer.ckpt_dir / "last.pt")
    code, err = run(["eval", "--checkpoint", ckpt], capsys)
    assert code == 2 and err.strip() == "adafuse eval: error: data.val_list is not set"
    wrong = tmp_path / "elsewhere"
    wrong.mkdir()
    code, err = run(["eval", "--checkpoint", ckpt, f"data.val_list={engine_synth.val_frames}", f"data.root={wrong}"],
                    capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and f"{engine_synth.val_frames}:1" in err, err
    assert not (tmp_path / "ev" / "eval" / "metrics.json").exists()


def test_a_missing_video_past_the_probed_entries_is_one_line_from_a_worker_too(engine_synth, tmp_path, capsys):
    lines = open(engine_synth.train_frames).read().splitlines()
    lst = tmp_path / "train.txt"
    lst.write_text("".join(f"{x}\n" for x in [*lines[:4], "frames/gone 10 0", *lines[4:8]]))
    code, err = train_with(engine_synth, tmp_path, capsys, root=engine_synth.root, train_list=str(lst), val_list="",
                           classes=engine_synth.classes, batch_size=9)  # one batch: every clip is read
    errors = [x for x in err.splitlines() if x.startswith("adafuse train:")]  # (the log line of the run start)
    assert code == 2 and len(errors) == 1 and "Traceback" not in err, err
    assert f"{lst}:5" in errors[0] and "frames/gone" in errors[0] and "DataLoader" not in errors[0]
