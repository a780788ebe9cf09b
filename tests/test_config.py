"""The config schema: defaults file in sync, presets valid, unknown keys and bad values rejected by name."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from adafuse.config import Config, ConfigError, all_keys, defaults_yaml, load_config, parse_overrides

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"
PRESETS = sorted(p for p in CONFIGS.rglob("*.yaml") if p.parent.name != "_base_" and p.name != "defaults.yaml")
PAPER_DATASETS = ("sthv1", "sthv2", "jester", "minikinetics")
PAPER_PRESETS = [p for p in PRESETS if p.parent.name in PAPER_DATASETS]


def test_defaults_file_is_the_rendered_schema():
    text = (CONFIGS / "defaults.yaml").read_text()
    assert text == defaults_yaml(), "configs/defaults.yaml is stale: python -m adafuse.config > configs/defaults.yaml"
    # and it parses back to exactly the defaults, with a comment line above every option
    assert Config.from_dict(yaml.safe_load(text)).to_dict() == Config().to_dict()
    lines = text.splitlines()
    for key in all_keys():
        option = key.split(".")[1]
        i = next(i for i, line in enumerate(lines) if line.startswith(f"  {option}:"))
        assert lines[i - 1].strip().startswith("#"), f"{key} has no comment in defaults.yaml"


def test_every_preset_loads_and_names_a_registered_model():
    from adafuse.models import MODEL_NAMES

    assert len(PAPER_PRESETS) >= 40
    for path in PAPER_PRESETS:
        cfg = load_config(path)
        assert cfg.model.name in MODEL_NAMES, path
        assert cfg.run.name == path.stem
        assert cfg.optim.lr == 0.02 and cfg.optim.lr_steps == [20, 40] and cfg.optim.epochs == 50, path
        ds = path.parent.name
        expected_lambda = {"sthv1": 0.125, "sthv2": 0.075, "jester": 0.1, "minikinetics": 0.1}[ds]
        learned = cfg.model.name.startswith(("adafuse", "ada", "cgnet"))
        if learned and "lambda" not in path.name:
            assert cfg.train.flops_weight == expected_lambda, path
        assert cfg.data.flip == (ds == "minikinetics"), path


def test_own_videos_and_synthetic_presets():
    from adafuse.models import MODEL_NAMES

    others = [p for p in PRESETS if p not in PAPER_PRESETS]
    assert {p.name for p in others} == {"own_videos.yaml", "tsn_r18_synth.yaml", "adafuse_tsn_r18_synth.yaml"}
    for path in others:
        cfg = load_config(path)
        assert cfg.model.name in MODEL_NAMES and cfg.run.name == path.stem, path
    own = load_config(CONFIGS / "own_videos.yaml")
    assert (own.data.root, own.data.train_list) == ("data/own/videos", "data/own/train.txt")
    stage1, stage2 = (load_config(CONFIGS / "synthetic" / f"{n}_synth.yaml") for n in ("tsn_r18", "adafuse_tsn_r18"))
    assert stage2.model.pretrained == f"{stage1.run.out_dir}/{stage1.run.name}/checkpoints/last.pt"
    assert stage1.data == stage2.data  # optimiser of each stage: test_synthetic_presets_are_the_demo_recipe


def test_base_chain_and_overrides(tmp_path):
    (tmp_path / "base.yaml").write_text("optim:\n  lr: 0.5\n  epochs: 3\nmodel:\n  name: tsn_r18\n")
    (tmp_path / "child.yaml").write_text("_base_: base.yaml\noptim:\n  epochs: 7\n")
    cfg = load_config(tmp_path / "child.yaml", ["optim.lr_steps=[1,2]", "optim.weight_decay=1e-4", "run.seed=3"])
    assert (cfg.optim.lr, cfg.optim.epochs, cfg.optim.lr_steps) == (0.5, 7, [1, 2])
    assert cfg.optim.weight_decay == pytest.approx(1e-4)  # YAML 1.1 reads 1e-4 as a string: coerced
    assert cfg.model.name == "tsn_r18" and cfg.run.seed == 3 and cfg.run.name == "child"
    # round trip through a plain dict (what a checkpoint stores)
    assert Config.from_dict(cfg.to_dict()).to_dict() == cfg.to_dict()


def test_unknown_keys_are_errors_with_a_suggestion(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim:\n  lrr: 0.1\n")
    with pytest.raises(ConfigError, match=r"bad.yaml.*unknown key 'optim.lrr'.*did you mean 'optim.lr'"):
        load_config(bad)
    with pytest.raises(ConfigError, match=r"unknown key 'optim.weight_decai'.*did you mean 'optim.weight_decay'"):
        parse_overrides(["optim.weight_decai=0.1"])
    with pytest.raises(ConfigError, match=r"unknown section 'optm'.*did you mean 'optim'"):
        Config.from_dict({"optm": {"lr": 1}})
    # the right option under the wrong section is pointed to its section
    with pytest.raises(ConfigError, match=r"unknown key 'train.lr'.*did you mean 'optim.lr'"):
        parse_overrides(["train.lr=0.1"])
    (tmp_path / "loop.yaml").write_text("_base_: loop.yaml\n")
    with pytest.raises(ConfigError, match="circular"):
        load_config(tmp_path / "loop.yaml")


def test_bad_values_name_the_key():
    with pytest.raises(ConfigError, match=r"optim.epochs must be an integer, got 'ten'"):
        parse_and_build(["optim.epochs=ten"])
    with pytest.raises(ConfigError, match=r"eval.decision must be one of argmax, sample, got 'argmx'"):
        parse_and_build(["eval.decision=argmx"])
    with pytest.raises(ConfigError, match=r"optim.lr_steps\[1\] must be an integer"):
        parse_and_build(["optim.lr_steps=[1,x]"])
    with pytest.raises(ConfigError, match="not of the form"):
        parse_and_build(["optim.lr"])
    assert parse_and_build(["model.num_classes=null"]).model.num_classes is None


def parse_and_build(overrides: list[str]) -> Config:
    return load_config(None, overrides)


def test_base_errors_do_not_echo_the_file_they_read(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("password: hunter2: [unclosed\nline two of the secret\n")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"_base_: {secret}\n")
    with pytest.raises(ConfigError) as e:
        load_config(cfg)
    msg = str(e.value)
    assert "secret.txt:1:" in msg and "not valid YAML" in msg
    assert "hunter2" not in msg and "line two" not in msg and "\n" not in msg
    secret.write_text("model: [api_key_1234]\n")
    with pytest.raises(ConfigError) as e:
        load_config(cfg)
    assert "api_key_1234" not in str(e.value) and "model" in str(e.value)
    cfg.write_text("_base_: 5\n")
    with pytest.raises(ConfigError, match="_base_ must be a file name"):
        load_config(cfg)


def test_synthetic_presets_are_the_demo_recipe():
    """configs/synthetic/ trains what `adafuse demo` trains: the same optimiser, schedule, model and loss settings
    (paths, run names and threads aside), so a change of the demo recipe cannot leave them behind."""
    from types import SimpleNamespace

    from adafuse.engine.demo import RECIPES, demo_config, pretrain_config

    data = SimpleNamespace(root="data/synth", train_frames="data/synth/train_frames.txt",
                           classes="data/synth/classes.txt")
    rec = RECIPES["full"]
    stages = {"tsn_r18": pretrain_config(rec, data, CONFIGS, 0, None),
              "adafuse_tsn_r18": demo_config(rec, "adafuse_tsn_r18", data, None, CONFIGS, "x", 0, None)}
    for name, demo in stages.items():
        preset = load_config(CONFIGS / "synthetic" / f"{name}_synth.yaml")
        assert preset.optim == demo.optim, name
        for key in ("flops_weight", "flops_start_epoch", "flops_warmup_epochs") if name.startswith("adafuse") else ():
            assert getattr(preset.train, key) == getattr(demo.train, key), (name, key)
        for key in ("num_frames", "dropout", "kwargs", "policy_hidden"):
            assert getattr(preset.model, key) == getattr(demo.model, key), (name, key)
        for key in ("input_size", "scale_size", "scales", "batch_size"):
            assert getattr(preset.data, key) == getattr(demo.data, key), (name, key)
