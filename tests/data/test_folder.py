"""``data prepare folder``: a folder of class sub-folders (or a path,label CSV) -> classes.txt + train/val lists;
stratified deterministic split, frame counts by the one definition, damaged videos reported, bad input one line."""

from __future__ import annotations

import numpy as np
import pytest
from datahelpers import run_data_cli, write_frames

from adafuse.data.folder import prepare_folder, split_items
from adafuse.data.lists import read_classes, read_list
from adafuse.data.media import open_source
from adafuse.data.synthetic import write_mp4


def video(path, n):
    path.parent.mkdir(parents=True, exist_ok=True)
    write_mp4(np.zeros((n, 16, 16, 3), np.uint8), path)


def own_folder(root, per_class=(5, 4, 1)):
    """Class ``c<k>`` with ``per_class[k]`` sources: mp4 videos of 3 + i frames, one a frame folder, one nested."""
    for k, n in enumerate(per_class):
        for i in range(n):
            if i == 1:
                write_frames(root / f"c{k}" / f"clip{i}", 4 + i)
            elif i == 2:
                video(root / f"c{k}" / "day2" / f"clip{i}.mp4", 3 + i)
            else:
                video(root / f"c{k}" / f"clip{i}.mp4", 3 + i)
    (root / "c0" / "notes.txt").write_text("not a video")
    return root


def test_folder_lists_every_source_with_its_frame_count_and_a_stratified_split(tmp_path, capsys):
    root = own_folder(tmp_path / "videos")
    out = tmp_path / "lists"
    assert run_data_cli(["prepare", "folder", str(root), "--out", str(out), "--val-fraction", "0.25"]) == 0
    assert read_classes(out / "classes.txt") == ["c0", "c1", "c2"]
    train, val = read_list(out / "train.txt"), read_list(out / "val.txt")
    listed = train + val
    assert len(listed) == 10 and len({r.path for r in listed}) == 10
    for r in listed:  # counts by the one definition, labels from the folder
        assert r.num_frames == open_source(root / r.path).num_frames
        assert r.path.startswith(f"c{r.label}/")
    assert "c0/day2/clip2.mp4" in {r.path for r in listed} and "c0/clip1" in {r.path for r in listed}
    per_class_val = [sum(r.label == k for r in val) for k in range(3)]
    assert per_class_val == [1, 1, 0]  # round(0.25 * 5) = 1, round(0.25 * 4) = 1, a lone video stays in train
    text = capsys.readouterr().out
    assert "1 other files" in text and "adafuse train configs/own_videos.yaml" in text and f"data.root={root}" in text

    # deterministic: same files and seed -> same lists; another seed -> another split of the same videos
    first = (out / "val.txt").read_text()
    assert run_data_cli(["prepare", "folder", str(root), "--out", str(out), "--val-fraction", "0.25"]) == 0
    assert (out / "val.txt").read_text() == first
    other = tmp_path / "other"
    seeds = [run_data_cli(["prepare", "folder", str(root), "--out", str(other / str(s)), "--val-fraction", "0.25",
                           "--seed", str(s)]) for s in range(1, 6)]
    assert seeds == [0] * 5
    assert any((other / str(s) / "val.txt").read_text() != first for s in range(1, 6))


def test_split_is_stratified_and_independent_of_other_classes():
    from adafuse.data.folder import Item

    items = [Item(f"a/{i}.mp4", "video", "a", None, "") for i in range(10)]
    items += [Item(f"b/{i}.mp4", "video", "b", None, "") for i in range(3)]
    split, _ = split_items(items, 0.3, seed=7)
    assert sum(split[f"a/{i}.mp4"] == "val" for i in range(10)) == 3
    assert sum(split[f"b/{i}.mp4"] == "val" for i in range(3)) == 1
    alone, _ = split_items(items[:10], 0.3, seed=7)  # class b removed: class a's split unchanged
    assert all(alone[p] == split[p] for p in alone)
    with pytest.raises(ValueError, match="between 0 and 1"):
        split_items(items, 1.0, seed=0)


def test_train_val_folders_and_val_list_give_the_split(tmp_path):
    root = tmp_path / "videos"
    for split, n in (("train", 3), ("val", 1)):
        for c in ("x", "y"):
            for i in range(n):
                video(root / split / c / f"{i}.mp4", 3)
    out = tmp_path / "l1"
    report = prepare_folder(root, out, progress=False)
    assert report.written == {"train": 6, "val": 2}
    assert all(r.path.startswith("val/") for r in read_list(out / "val.txt"))

    flat = own_folder(tmp_path / "flat")
    names = tmp_path / "val_names.txt"
    names.write_text("c0/clip0.mp4\n\n./c1/clip1\n")
    prepare_folder(flat, tmp_path / "l2", val_list=names, progress=False)
    assert sorted(r.path for r in read_list(tmp_path / "l2" / "val.txt")) == ["c0/clip0.mp4", "c1/clip1"]
    names.write_text("c0/clip0.mp4\nc9/nothing.mp4\n")
    assert run_data_cli(["prepare", "folder", str(flat), "--out", str(tmp_path / "l3"), "--val-list", str(names)]) == 2


def test_csv_input_with_labels_as_names_and_missing_files_reported(tmp_path, capsys):
    root = tmp_path / "clips"
    for i in range(4):
        video(root / f"v{i}.mp4", 3 + i)
    write_frames(root / "f0", 5)
    (root / "broken.mp4").write_bytes(b"not a video at all")
    csv = tmp_path / "labels.csv"
    csv.write_text("path,label\nv0.mp4,wave\nv1.mp4,wave\n\"v2.mp4\",\"clap, twice\"\nv3.mp4,clap, twice\n"
                   "f0,wave\nbroken.mp4,wave\ngone.mp4,wave\n")
    out = tmp_path / "lists"
    assert run_data_cli(["prepare", "folder", str(csv), "--root", str(root), "--out", str(out)]) == 2  # 3 columns
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{csv}:5: 3 columns, the first line has 2" in err
    csv.write_text(csv.read_text().replace("v3.mp4,clap, twice", "v3.mp4,\"clap, twice\""))
    assert run_data_cli(["prepare", "folder", str(csv), "--root", str(root), "--out", str(out)]) == 0
    assert read_classes(out / "classes.txt") == ["clap, twice", "wave"]
    listed = read_list(out / "train.txt") + read_list(out / "val.txt")
    assert sorted(r.path for r in listed) == ["f0", "v0.mp4", "v1.mp4", "v2.mp4", "v3.mp4"]
    missing = (out / "missing.txt").read_text().splitlines()
    assert len(missing) == 2 and any("gone.mp4\tnot found" in m and f"{csv}:8" in m for m in missing)
    assert any("broken.mp4\tunreadable" in m for m in missing)
    assert "--strict" not in capsys.readouterr().out
    assert run_data_cli(["prepare", "folder", str(csv), "--root", str(root), "--out", str(out), "--strict"]) == 1


@pytest.mark.parametrize("case", ["no_root", "no_classes", "empty_class", "loose_video", "csv_line", "csv_dup",
                                  "no_source", "annotations_missing"])
def test_bad_input_is_one_line_naming_the_file_and_exit_2(tmp_path, capsys, case):
    root = tmp_path / "videos"
    root.mkdir()
    argv = ["prepare", "folder", str(root), "--out", str(tmp_path / "out")]
    expect = str(root)
    if case == "no_root":
        argv[2] = expect = str(tmp_path / "nowhere")
    elif case == "empty_class":
        video(root / "a" / "0.mp4", 3)
        (root / "b").mkdir()
        expect = f"{root / 'b'}: no video files or frame folders"
    elif case == "loose_video":
        video(root / "a" / "0.mp4", 3)
        video(root / "stray.mp4", 3)
        expect = f"{root / 'stray.mp4'}: a video directly under"
    elif case in ("csv_line", "csv_dup"):
        csv = tmp_path / "l.csv"
        csv.write_text("a.mp4,x\nb.mp4\n" if case == "csv_line" else "a.mp4,x\nb.mp4,y\na.mp4,y\n")
        argv[2] = str(csv)
        expect = f"{csv}:2" if case == "csv_line" else f"{csv}:3: a.mp4 is listed twice (first at line 1)"
    elif case == "no_source":
        del argv[2]
        expect = "needs SOURCE"
    elif case == "annotations_missing":
        argv[1:3] = ["sthv1"]
        expect = "sthv1 needs --annotations and --root"
    assert run_data_cli(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and expect in err, err
    assert not (tmp_path / "out" / "train.txt").exists()
