"""Config: round trip, overrides, and every bad input gives one line with file, key and value, exit 2."""

import pytest

from testbed.cli import main
from testbed.config import load_sweep_config
from testbed.config_layers import to_yaml
from testbed.errors import TestbedError
from testbed.resolve import load_run_config


def test_round_trip_and_overrides(tmp_path):
    config = load_run_config(
        None, ["train.multiplier=40", "model.size=s3", "data.name=syn_en_fr", "data.mixture={syn_en: 0.5, syn_fr: 0.5}"]
    )
    assert config.train.multiplier == 40.0 and config.model.size == "s3"
    saved = tmp_path / "run.yaml"
    saved.write_text(to_yaml(config))
    again = load_run_config(saved)
    assert again == config
    assert load_run_config(saved, ["train.seed=3"]).train.seed == 3


@pytest.mark.parametrize(
    "override, key, message",
    [
        ("train.bogus=1", "train.bogus", "not in 'TrainConfig'"),
        ("train.seed=abc", "train.seed='abc'", "could not be converted"),
        ("train.multiplier=-5", "train.multiplier=-5.0", "must be a positive number"),
        ("data.mixture={syn_en: 0.7, syn_fr: 0.2}", "data.mixture=", "sum to 0.9, not 1"),
        ("model.size=s99", "model.size='s99'", "size of ladder 'micro'"),
        ("data.mixture={nope: 1.0}", "data.mixture.nope=1.0", "unknown source"),
        ("model.ladder=giant", "model.ladder='giant'", "unknown ladder"),
    ],
)
def test_bad_values_name_key_and_value(override, key, message, capsys, runs_dir):
    with pytest.raises(TestbedError) as caught:
        load_run_config(None, [override])
    assert key in str(caught.value) and message in str(caught.value)
    assert main(["train", override, f"out_dir={runs_dir}"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and key in err and "command line" in err
    assert not runs_dir.exists()  # failed before anything ran


def test_bad_yaml_names_the_file(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: {multiplier: [1, 2\n")
    assert main(["train", str(bad)]) == 2
    assert str(bad) in capsys.readouterr().err
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text("name: x\ngrid:\n  - sizes: [s1]\n    datasets: [klingon]\n    multipliers: [1]\n")
    assert main(["sweep", "plan", str(sweep)]) == 2
    assert "klingon" in capsys.readouterr().err
    with pytest.raises(TestbedError, match="grid"):
        load_sweep_config(tmp_path / "sweep.yaml", ["grid=[]"])
