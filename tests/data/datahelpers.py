"""Helpers of the data tests (a uniquely named module: the test directories are not packages)."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image


def write_frames(folder: Path, n: int, size=(24, 32), template="{:05d}.jpg", start=1, value=None) -> Path:
    """A frame folder of ``n`` JPEGs; frame i is filled with grey level ``10 * i`` (or ``value``)."""
    folder.mkdir(parents=True, exist_ok=True)
    h, w = size
    for i in range(n):
        level = (10 * i) % 250 if value is None else value
        Image.fromarray(np.full((h, w, 3), level, np.uint8)).save(folder / template.format(i + start))
    return folder


def run_data_cli(argv: list[str]) -> int:
    """Run ``adafuse data ...`` through the data verb's own parser (independent of the other verbs)."""
    from adafuse.cli import data_cmd

    parser = argparse.ArgumentParser(prog="adafuse")
    sub = parser.add_subparsers(dest="command")
    data_cmd.register(sub)
    args = parser.parse_args(["data", *argv])
    return int(args.func(args) or 0)
