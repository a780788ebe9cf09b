"""Shared fixtures of the data tests: a tiny synthetic set (generated once per session) and helpers."""

from __future__ import annotations

import shutil

import pytest

from adafuse.data.synthetic import SYNTH_PRESETS, generate_synthetic


@pytest.fixture(scope="session")
def tiny_synth(tmp_path_factory):
    """The ``tiny`` synthetic preset (15 classes x 4 videos, 64 px, 16-24 frames), read-only."""
    out = tmp_path_factory.mktemp("synth") / "tiny"
    return generate_synthetic(out, **SYNTH_PRESETS["tiny"], seed=0, workers=2, progress=False)


@pytest.fixture
def synth_copy(tiny_synth, tmp_path):
    """A writable copy of the tiny synthetic set."""
    dst = tmp_path / "synth"
    shutil.copytree(tiny_synth.root, dst)
    return dst
