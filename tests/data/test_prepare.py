from __future__ import annotations

import json

import numpy as np
import pytest
from datahelpers import run_data_cli, write_frames

from adafuse.data.annotations import kinetics_clip_name, read_jester, read_kinetics, read_sthv1, read_sthv2
from adafuse.data.errors import ListFormatError
from adafuse.data.lists import read_classes, read_list
from adafuse.data.synthetic import write_mp4


def tiny_video(path, n=6):
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".webm":
        import av

        with av.open(str(path), "w") as c:
            s = c.add_stream("libvpx-vp9", rate=12)
            s.height = s.width = 16
            s.pix_fmt = "yuv420p"
            s.options = {"deadline": "realtime", "cpu-used": "8"}
            for i in range(n):
                frame = av.VideoFrame.from_ndarray(np.full((16, 16, 3), 20 * i, np.uint8), format="rgb24")
                for p in s.encode(frame):
                    c.mux(p)
            for p in s.encode():
                c.mux(p)
    else:
        write_mp4(np.zeros((n, 16, 16, 3), np.uint8), path)


def write_20bn(ann, prefix, classes, train, val):
    ann.mkdir(parents=True, exist_ok=True)
    (ann / f"{prefix}-labels.csv").write_text("".join(f"{c}\n" for c in classes))
    (ann / f"{prefix}-train.csv").write_text("".join(f"{i};{c}\n" for i, c in train))
    (ann / f"{prefix}-validation.csv").write_text("".join(f"{i};{c}\n" for i, c in val))


def test_sthv1_prepare(tmp_path, capsys):
    classes = ["Pushing something from left to right", "Dropping something", "Moving something up"]
    write_20bn(tmp_path / "ann", "something-something-v1", classes,
               train=[(1, classes[0]), (2, classes[1]), (3, classes[2])], val=[(4, classes[1])])
    root = tmp_path / "20bn-something-something-v1"
    for vid, n in ((1, 5), (2, 7), (4, 3)):
        write_frames(root / str(vid), n, size=(8, 8))  # video 3 is missing
    out = tmp_path / "lists"
    code = run_data_cli(["prepare", "sthv1", "--annotations", str(tmp_path / "ann"), "--root", str(root),
                         "--out", str(out), "--workers", "2"])
    assert code == 0
    assert read_classes(out / "classes.txt") == sorted(classes)  # TSM order: sorted names
    sorted_idx = {c: i for i, c in enumerate(sorted(classes))}
    train = read_list(out / "train.txt")
    assert [(r.path, r.num_frames, r.label) for r in train] == [
        ("1", 5, sorted_idx[classes[0]]), ("2", 7, sorted_idx[classes[1]])]
    assert [(r.path, r.num_frames) for r in read_list(out / "val.txt")] == [("4", 3)]
    printed = capsys.readouterr().out
    assert "1 of 3 annotated videos missing" in printed and "3: not found" in printed
    missing = (out / "missing.txt").read_text()
    assert missing.startswith("train\t3\tnot found") and "something-something-v1-train.csv:3" in missing
    assert run_data_cli(["prepare", "sthv1", "--annotations", str(tmp_path / "ann"), "--root", str(root),
                         "--out", str(out), "--strict"]) == 1


def test_jester_file_order_and_unknown_class(tmp_path):
    classes = ["Swiping Left", "Swiping Right", "Doing other things"]
    write_20bn(tmp_path, "jester-v1", classes, train=[(10, "Swiping Right")], val=[(11, "Swiping Left")])
    ann = read_jester(tmp_path, class_order="file")
    assert ann.classes == classes and ann.split("train")[0].label == 1
    assert read_jester(tmp_path).classes == sorted(classes)
    (tmp_path / "jester-v1-validation.csv").write_text("11;Swiping Left\n12;Waving\n")
    with pytest.raises(ListFormatError, match=r"jester-v1-validation.csv:2.*Waving"):
        read_jester(tmp_path)


def test_sthv1_reader_with_explicit_files(tmp_path):
    write_20bn(tmp_path, "something-something-v1", ["b", "a"], train=[(1, "a")], val=[])
    files = [tmp_path / "something-something-v1-labels.csv", tmp_path / "something-something-v1-train.csv"]
    ann = read_sthv1(files)
    assert ann.classes == ["a", "b"] and [v.name for v in ann.videos] == ["1"]
    assert any("val" in n for n in ann.notes)


def test_sthv2_prepare_webm(tmp_path):
    ann = tmp_path / "labels"
    ann.mkdir()
    labels = {"Moving something up": "0", "Putting something next to something": "1"}
    (ann / "something-something-v2-labels.json").write_text(json.dumps(labels))
    train = [
        {"id": "100", "label": "moving a cup up", "template": "Moving [something] up", "placeholders": ["a cup"]},
        {"id": "101", "label": "putting pen next to box", "template": "Putting [something] next to [something]",
         "placeholders": ["pen", "box"]},
    ]
    val = [{"id": "200", "label": "x", "template": "Moving [something] up", "placeholders": ["x"]}]
    (ann / "something-something-v2-train.json").write_text(json.dumps(train))
    (ann / "something-something-v2-validation.json").write_text(json.dumps(val))
    root = tmp_path / "20bn-something-something-v2"
    tiny_video(root / "100.webm", n=7)
    tiny_video(root / "101.webm", n=9)
    tiny_video(root / "200.webm", n=5)
    out = tmp_path / "out"
    assert run_data_cli(["prepare", "sthv2", "--annotations", str(ann), "--root", str(root), "--out", str(out)]) == 0
    assert read_classes(out / "classes.txt") == ["Moving something up", "Putting something next to something"]
    assert [(r.path, r.num_frames, r.label) for r in read_list(out / "train.txt")] == [
        ("100.webm", 7, 0), ("101.webm", 9, 1)]
    assert [(r.path, r.label) for r in read_list(out / "val.txt")] == [("200.webm", 0)]
    assert not (out / "missing.txt").exists()
    bad = [{"id": "1", "template": "Unknown [something]"}]
    (ann / "something-something-v2-train.json").write_text(json.dumps(bad))
    with pytest.raises(ListFormatError, match="Unknown something"):
        read_sthv2(ann)


def kinetics_csv(path, rows):
    body = "".join(",".join(map(str, r)) + "\n" for r in rows)
    path.write_text("label,youtube_id,time_start,time_end,split\n" + body)


def test_kinetics_prepare_with_spaces_and_layouts(tmp_path):
    ann = tmp_path / "ann"
    ann.mkdir()
    kinetics_csv(ann / "kinetics_400_train.csv", [
        ("air drumming", "abc", 10, 20, "train"), ("abseiling", "def", 0, 10, "train"),
        ("abseiling", "gone", 5, 15, "train")])
    kinetics_csv(ann / "kinetics_400_val.csv", [("air drumming", "xyz", 30, 40, "val")])
    (ann / "kinetics_400_test.csv").write_text("youtube_id,time_start,time_end,split\nqqq,0,10,test\n")
    root = tmp_path / "kinetics400"
    tiny_video(root / "train" / "air drumming" / f"{kinetics_clip_name('abc', 10, 20)}.mp4", n=4)
    write_frames(root / "train_frames" / kinetics_clip_name("def", 0, 10), 6, size=(8, 8))
    tiny_video(root / "val" / "air drumming" / "xyz_000030_000040.mp4", n=5)
    out = tmp_path / "lists"
    assert run_data_cli(["prepare", "kinetics", "--annotations", str(ann), "--root", str(root),
                         "--out", str(out)]) == 0
    assert read_classes(out / "classes.txt") == ["abseiling", "air drumming"]
    train = read_list(out / "train.txt")
    assert [(r.path, r.num_frames, r.label) for r in train] == [
        ("train/air drumming/abc_000010_000020.mp4", 4, 1), ("train_frames/def_000000_000010", 6, 0)]
    assert [(r.path, r.label) for r in read_list(out / "val.txt")] == [("val/air drumming/xyz_000030_000040.mp4", 1)]
    assert "gone_000005_000015" in (out / "missing.txt").read_text()


def test_minikinetics_subsets(tmp_path):
    ann = tmp_path / "ann"
    ann.mkdir()
    kinetics_csv(ann / "train.csv", [("c", "a1", 0, 10, "train"), ("b", "a2", 0, 10, "train"),
                                     ("a", "a3", 0, 10, "train")])
    kinetics_csv(ann / "validate.csv", [("c", "v1", 0, 10, "val"), ("a", "v2", 0, 10, "val")])
    (tmp_path / "train_ids.txt").write_text("a1\na2\n")
    (tmp_path / "val_ids.txt").write_text("v1\nv2\n")
    k = read_kinetics(ann, tmp_path / "train_ids.txt", tmp_path / "val_ids.txt", dataset="minikinetics")
    assert k.classes == ["b", "c"]  # classes of the kept training videos
    assert [(v.name, v.label, v.split) for v in k.videos] == [
        ("a1_000000_000010", 1, "train"), ("a2_000000_000010", 0, "train"), ("v1_000000_000010", 1, "val")]
    assert any("dropped" in n for n in k.notes)
    root = tmp_path / "root"
    tiny_video(root / "a1_000000_000010.mp4")
    out = tmp_path / "out"
    args = ["prepare", "minikinetics", "--annotations", str(ann), "--root", str(root), "--out", str(out)]
    assert run_data_cli(args) == 2  # one line naming the missing options
    assert run_data_cli([*args, "--subset-train", str(tmp_path / "train_ids.txt"),
                         "--subset-val", str(tmp_path / "val_ids.txt")]) == 0
    assert [r.path for r in read_list(out / "train.txt")] == ["a1_000000_000010.mp4"]
