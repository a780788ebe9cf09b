from __future__ import annotations

import subprocess
import sys

import pytest
from datahelpers import run_data_cli


def test_data_verb_module_is_light():
    code = "import sys, adafuse.cli.data_cmd; print('torch' in sys.modules, 'av' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


@pytest.mark.parametrize("sub", ["prepare", "extract", "check", "synth"])
def test_subcommand_help(sub, capsys):
    with pytest.raises(SystemExit) as e:
        run_data_cli([sub, "--help"])
    assert e.value.code == 0
    assert "usage: adafuse data " + sub in capsys.readouterr().out


def test_frame_range_argument(tmp_path):
    from adafuse.cli.data_cmd import _frame_range

    assert _frame_range("16..48") == (16, 48) and _frame_range("8-9") == (8, 9) and _frame_range("20") == (20, 20)
