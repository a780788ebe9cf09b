"""Bad input to the data commands is one line naming the file (and line), exit code 2; official annotation
files are found under both their long and their short names; `data check` treats x.mp4 and x.webm as two
videos."""

from __future__ import annotations

import json
import shutil

import pytest
from datahelpers import run_data_cli, write_frames

from adafuse.data.annotations import read_jester, read_sthv2
from adafuse.data.check import check_list
from adafuse.data.dataset import VideoDataset
from adafuse.data.errors import ListFormatError
from adafuse.data.lists import read_classes, read_list


def test_a_list_that_is_not_utf8_names_the_line(tmp_path, capsys):
    write_frames(tmp_path / "a", 3, size=(8, 8))
    write_frames(tmp_path / "b", 3, size=(8, 8))
    lst = tmp_path / "l.txt"
    lst.write_bytes(b"a 3 0\nb 3 1\ncaf\xe9 3 0\n")
    with pytest.raises(ListFormatError, match=r"l.txt:3: not UTF-8"):
        read_list(lst)
    with pytest.raises(ListFormatError, match=r"l.txt:3"):
        VideoDataset(lst)
    report = check_list(lst, progress=False)
    assert [(p.kind, p.line) for p in report.problems] == [("malformed", 3)]
    (tmp_path / "classes.txt").write_bytes(b"ok\n\xff\xfe\n")
    with pytest.raises(ListFormatError, match=r"classes.txt:2"):
        read_classes(tmp_path / "classes.txt")
    assert run_data_cli(["check", str(lst), "--workers", "1"]) == 2  # the classes file next to it is bad
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "classes.txt:2" in err


def test_missing_list_or_classes_file_is_one_line(tmp_path, capsys):
    write_frames(tmp_path / "a", 3, size=(8, 8))
    (tmp_path / "l.txt").write_text("a 3 0\n")
    for argv, name in ((["check", str(tmp_path / "nope.txt")], "nope.txt"),
                       (["check", str(tmp_path / "l.txt"), "--classes", str(tmp_path / "gone.txt")], "gone.txt"),
                       (["extract", "--list", str(tmp_path / "nope.txt"), "--out", str(tmp_path / "o")], "nope.txt")):
        assert run_data_cli(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and name in err and "Traceback" not in err


def test_prepare_unknown_class_is_one_line(tmp_path, capsys):
    ann = tmp_path / "ann"
    ann.mkdir()
    (ann / "jester-v1-labels.csv").write_text("Swiping Left\n")
    (ann / "jester-v1-train.csv").write_text("1;Swiping Left\n2;Waving Hello\n")
    (tmp_path / "root").mkdir()
    argv = ["prepare", "jester", "--annotations", str(ann), "--root", str(tmp_path / "root"), "--out", str(tmp_path)]
    assert run_data_cli(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "jester-v1-train.csv:2" in err and "Waving Hello" in err


def test_short_official_annotation_names(tmp_path):
    sthv2 = tmp_path / "sthv2"
    sthv2.mkdir()
    (sthv2 / "labels.json").write_text(json.dumps({"Moving something up": "0", "Dropping something": "1"}))
    entry = {"id": "7", "template": "Dropping [something]", "label": "x", "placeholders": []}
    (sthv2 / "train.json").write_text(json.dumps([entry]))
    (sthv2 / "validation.json").write_text(json.dumps([{**entry, "id": "8"}]))
    (sthv2 / "test.json").write_text(json.dumps([{"id": "9"}]))
    ann = read_sthv2(sthv2)
    assert [(v.name, v.label, v.split) for v in ann.videos] == [("7", 1, "train"), ("8", 1, "val")]

    jester = tmp_path / "jester"
    jester.mkdir()
    (jester / "labels.csv").write_text("Swiping Left\nSwiping Right\n")
    (jester / "train.csv").write_text("video_id;label\n1;Swiping Right\n")
    (jester / "validation.csv").write_text("2;Swiping Left\n")
    ann = read_jester(jester)
    assert [(v.name, v.label, v.split) for v in ann.videos] == [("1", 1, "train"), ("2", 0, "val")]

    other = tmp_path / "other"
    other.mkdir()
    for i in range(50):
        (other / f"unrelated_{i}.json").write_text("{}")
    with pytest.raises(FileNotFoundError) as e:
        read_sthv2(other)
    msg = str(e.value)
    assert "something-something-v2-labels.json or labels.json" in msg and "unrelated_3" not in msg


def test_check_treats_two_extensions_as_two_videos(tiny_synth, tmp_path):
    rec = read_list(tiny_synth.val_videos)[0]
    shutil.copy(rec.resolve(tiny_synth.root), tmp_path / "x.mp4")
    (tmp_path / "x.webm").write_bytes(b"not a video")
    (tmp_path / "l.txt").write_text(f"x.mp4 {rec.label}\nx.webm {rec.label}\nx.mp4 {rec.label}\n")
    report = check_list(tmp_path / "l.txt", progress=False)
    assert [(p.kind, p.line) for p in report.problems] == [("unreadable", 2), ("duplicate", 3)]
