from __future__ import annotations

import pytest

from adafuse.data.errors import ListFormatError
from adafuse.data.lists import (
    VideoRecord,
    iter_list_lines,
    parse_list_line,
    read_classes,
    read_list,
    write_classes,
    write_list,
)


def test_frame_line_parsed_from_the_right():
    r = parse_list_line("some dir/with spaces 12 120 5", "l.txt", 3)
    assert (r.path, r.num_frames, r.label, r.line, r.list_file) == ("some dir/with spaces 12", 120, 5, 3, "l.txt")
    assert not r.is_video and r.id == "some dir/with spaces 12"


def test_video_lines_with_and_without_count():
    r = parse_list_line("abc/my clip 3.webm 7")
    assert (r.path, r.num_frames, r.label, r.is_video, r.id) == ("abc/my clip 3.webm", None, 7, True, "abc/my clip 3")
    r = parse_list_line("x.mp4 48 2")
    assert (r.path, r.num_frames, r.label) == ("x.mp4", 48, 2)
    r = parse_list_line("no_extension 2", kind="video")
    assert (r.path, r.num_frames, r.label) == ("no_extension", None, 2)


@pytest.mark.parametrize(
    "text,kind,needle",
    [
        ("dir 12", "frames", "<num_frames>"),
        ("dir", "auto", "expected"),
        ("dir 12 x", "auto", "label 'x'"),
        ("folder_without_count 3", "auto", "no video extension"),
        ("dir -3 1", "frames", "negative frame count"),
    ],
)
def test_malformed_lines_name_file_and_line(text, kind, needle):
    with pytest.raises(ListFormatError) as e:
        parse_list_line(text, "lists/train.txt", 17, kind)
    assert "lists/train.txt:17" in str(e.value) and needle in str(e.value)
    assert e.value.line == 17


def test_read_list_skips_blank_and_comments_and_reports_line(tmp_path):
    p = tmp_path / "l.txt"
    p.write_text("# comment\n\na 10 0\nb c.mp4 1\n")
    recs = read_list(p)
    assert [(r.path, r.line) for r in recs] == [("a", 3), ("b c.mp4", 4)]
    p.write_text("a 10 0\nbroken\n")
    with pytest.raises(ListFormatError, match=r"l.txt:2"):
        read_list(p)
    items = list(iter_list_lines(p))
    assert isinstance(items[0][1], VideoRecord) and isinstance(items[1][1], ListFormatError)


def test_write_read_roundtrip_with_spaces(tmp_path):
    recs = [
        VideoRecord("air drumming/x y_000001_000011.mp4", 3, 250),
        VideoRecord("v 1.webm", 1),
        VideoRecord("f", 0, 5),
    ]
    p = write_list(recs, tmp_path / "out" / "l.txt")
    back = read_list(p)
    assert [(r.path, r.label, r.num_frames) for r in back] == [(r.path, r.label, r.num_frames) for r in recs]


def test_classes_roundtrip(tmp_path):
    p = write_classes(["Pushing something from left to right", "b"], tmp_path / "classes.txt")
    assert read_classes(p) == ["Pushing something from left to right", "b"]


def test_resolve(tmp_path):
    r = VideoRecord("a/b", 0, 3)
    assert r.resolve(tmp_path) == str(tmp_path / "a" / "b")
    assert VideoRecord("/abs/x.mp4", 0).resolve(tmp_path) == "/abs/x.mp4"
