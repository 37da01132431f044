"""Every bad config value is refused when the config is built: one line naming the source, key and value, exit 2."""

from pathlib import Path

import pytest

from testbed.cli import main
from testbed.config import (
    DataConfig,
    FinetuneSweepConfig,
    ModelConfig,
    RunConfig,
    SlurmConfig,
    SweepConfig,
    TrainConfig,
    load_sweep_config,
)
from testbed.errors import TestbedError
from testbed.resolve import load_run_config

SWEEPS = sorted((Path(__file__).resolve().parents[1] / "configs" / "sweeps").glob("*.yaml"))
GRID = "grid:\n  - sizes: [s1]\n    datasets: [syn_en]\n    multipliers: [1]\n"


@pytest.mark.parametrize(
    "override, shown, why",
    [
        ("train.lr=nan", "train.lr=nan", "must be a finite positive number"),
        ("train.lr=inf", "train.lr=inf", "must be a finite positive number"),
        ("train.lr=0", "train.lr=0.0", "must be a finite positive number"),
        ("train.grad_clip=nan", "train.grad_clip=nan", "must be a finite non-negative number"),
        ("train.beta2=2", "train.beta2=2.0", "must be a number within [0, 1)"),
        ("train.beta2=-0.1", "train.beta2=-0.1", "within [0, 1)"),
        ("train.threads=-3", "train.threads=-3", "must be an integer within [0, 4096]"),
        ("train.multiplier=1e308", "train.multiplier=1e+308", "at most 10000"),
        ("train.multiplier=1e12", "train.multiplier=1000000000000.0", "at most 10000"),
        ("train.multiplier=nan", "train.multiplier=nan", "must be a positive number"),
        ("train.weight_decay=-1", "train.weight_decay=-1.0", "must be a finite non-negative number"),
        ("train.z_loss=inf", "train.z_loss=inf", "must be a finite non-negative number"),
        ("train.keep_train_states=-1", "train.keep_train_states=-1", "must be at least 1"),
        ("train.keep_train_states=0", "train.keep_train_states=0", "must be at least 1"),
        ("train.log_spaced_checkpoints=-1", "train.log_spaced_checkpoints=-1", "within [0, 64]"),
        ("train.log_spaced_checkpoints=65", "train.log_spaced_checkpoints=65", "within [0, 64]"),
        ("train.checkpoints_per_doubling=0", "train.checkpoints_per_doubling=0", "within [1, 8]"),
        ("train.seed=-1", "train.seed=-1", "within [0, 4294967295]"),
        ("train.final_lr_ratio=nan", "train.final_lr_ratio=nan", "within [0, 1]"),
        ("train.cooldown_fraction=0", "train.cooldown_fraction=0.0", "within (0, 1)"),
        ("train.attention=fast", "train.attention='fast'", "attention backends"),
        ("train.warmup_steps=-1", "train.warmup_steps=-1", "non-negative integer"),
        ("train.batch_size=0", "train.batch_size=0", "positive integer"),
        ("data.val_tokens=0", "data.val_tokens=0", "positive integer"),
        ("data.world_seed=-2", "data.world_seed=-2", "within [0, 4294967295]"),
        ("data.mixture={syn_en: .nan}", "data.mixture.syn_en=nan", "non-negative"),
        ("model.ladder=../x", "model.ladder='../x'", "must be a name"),
        ("model.size=a/b", "model.size='a/b'", "must be a name"),
        ("sweep=../escape", "sweep='../escape'", "must be a name"),
        ("data.name=..", "data.name='..'", "must be a name"),
        ("data.tokenizer=/etc", "data.tokenizer='/etc'", "must be a name"),
        ("train.lr=${nope}", "train.lr", "Interpolation key 'nope' not found"),
    ],
)
def test_bad_values_name_key_and_value(override, shown, why):
    with pytest.raises(TestbedError) as caught:
        load_run_config(None, [override])
    message = str(caught.value)
    assert message.startswith(f"defaults + command line: {shown}: ")
    assert why in message and "\n" not in message


@pytest.mark.parametrize("override", ["train.lr=nan", "train.multiplier=1e12", "model.ladder=../x"])
def test_the_cli_prints_one_line_and_exits_2(override, capsys, runs_dir):
    assert main(["train", override, f"out_dir={runs_dir}"]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("testbed: error: ") and captured.err.count("\n") == 1
    assert override.split("=")[0] in captured.err and not captured.out
    assert not runs_dir.exists()


@pytest.mark.parametrize("text, kind", [("- train\n- model\n", "list"), ("5\n", "int")])
def test_a_yaml_file_must_be_a_mapping(tmp_path, capsys, text, kind):
    path = tmp_path / "run.yaml"
    path.write_text(text)
    with pytest.raises(TestbedError, match=kind):
        load_run_config(path)
    assert main(["train", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(path) in err
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(text)
    with pytest.raises(TestbedError, match=str(sweep)):
        load_sweep_config(sweep)


@pytest.mark.parametrize(
    "body, shown, why",
    [
        ("defaults: {train: {lr: .nan}}\n", "defaults.train.lr=nan", "finite positive"),
        ("defaults: {train: {keep_train_states: 0}}\n", "defaults.train.keep_train_states=0", "at least 1"),
        ("defaults: {model: {ladder: ../x}}\n", "defaults.model.ladder='../x'", "must be a name"),
        ("name: ../escape\n", "name='../escape'", "must be a name"),
        ("name: a/b\n", "name='a/b'", "must be a name"),
        ("eval_suite: ../../etc/x\n", "eval_suite='../../etc/x'", "must be a name"),
        ("data: ../x\n", "data='../x'", "must be a name"),
        ("cpu_workers: 0\n", "cpu_workers=0", "at least 1"),
        ("slurm: {target_hours: .inf}\n", "slurm.target_hours=inf", "finite positive"),
        ("slurm: {max_gpus: -1}\n", "slurm.max_gpus=-1", "non-negative"),
        ("slurm: {array_parallelism: 0}\n", "slurm.array_parallelism=0", "at least 1"),
        ("finetune: {tasks: [../x], sizes: [1]}\n", "finetune.tasks[0]='../x'", "must be a name"),
        ("finetune: {tasks: [syn_en-syn_fr], sizes: [0]}\n", "finetune.sizes[0]=0", "positive integer"),
        ("finetune: {tasks: [syn_en-syn_fr]}\n", "finetune.sizes=[]", "at least one size"),
        ("finetune: {protocol: ../p}\n", "finetune.protocol='../p'", "must be a name"),
        ("finetune: {steps: some}\n", "finetune.steps='some'", "known: final, all"),
    ],
)
def test_bad_sweep_values_are_refused_at_load(tmp_path, body, shown, why):
    path = tmp_path / "sweep.yaml"
    path.write_text(body + GRID)
    with pytest.raises(TestbedError) as caught:
        load_sweep_config(path)
    assert str(caught.value).startswith(f"{path}: {shown}: ") and why in str(caught.value)


def test_grid_blocks_are_named_by_index(tmp_path, capsys):
    path = tmp_path / "sweep.yaml"
    path.write_text(GRID + "  - sizes: [s2]\n    datasets: [syn_en]\n    multipliers: [1, .nan]\n")
    with pytest.raises(TestbedError, match=r"grid\[1\]\.multipliers\[1\]=nan: must be a positive number"):
        load_sweep_config(path)
    for override, shown in (
        ("grid=[{sizes: [s1], datasets: [syn_en], multipliers: [1], seeds: [-1]}]", "grid[0].seeds[0]=-1"),
        ("grid=[{sizes: [s1], datasets: [../x], multipliers: [1]}]", "grid[0].datasets[0]='../x'"),
    ):
        with pytest.raises(TestbedError) as caught:
            load_sweep_config(path, [override])
        assert f"command line: {shown}: " in str(caught.value)
    with pytest.raises(TestbedError, match="a list is replaced whole"):  # not a TypeError traceback
        load_sweep_config(path, ["grid.0.seeds=[1]"])
    assert main(["sweep", "plan", str(path), "defaults.train.lr=nan"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "defaults.train.lr=nan" in err


def test_defaults_pass_and_every_shipped_sweep_loads():
    for schema in (ModelConfig, DataConfig, TrainConfig, RunConfig, SlurmConfig, FinetuneSweepConfig, SweepConfig):
        schema()
    for path in SWEEPS:
        assert load_sweep_config(path).grid
    assert load_sweep_config(SWEEPS[0], ["finetune.tasks=[syn_en-syn_fr, wmt17_en_de]"]).finetune.tasks
    config = load_run_config(
        None,
        [
            "train.multiplier=10000",
            "train.log_spaced_checkpoints=64",
            "train.beta2=0",
            "train.weight_decay=0",
            "train.grad_clip=0",
            "data.name=syn_en_fr",
            "model.ladder=reduced",
            "model.size=r1",
            "sweep=a.b+c-d_1",
        ],
    )
    assert config.train.multiplier == 10000.0 and config.data.mixture == {"syn_en": 0.5, "syn_fr": 0.5}
