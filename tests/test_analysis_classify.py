"""Task curves classified by explicit statistics; the context-sensitivity table."""

import json

import numpy as np
import pandas as pd
import pytest

from analysis import gadre2024
from analysis.classify import classify, classify_curve
from analysis.cli import main
from analysis.context import context_sensitivity
from analysis.errors import AnalysisError
from analysis.schema import to_frame
from analysis.synthetic import TAXONOMY, taxonomy_curve
from analysis.verdicts import CLASSES, Classification

SEEDS = 20
REQUIRED_RATE = 0.95  # at least 19 of 20 clear-cut synthetic curves of each class


@pytest.mark.parametrize("kind", list(TAXONOMY))
def test_synthetic_curves_of_each_class_are_classified_correctly(kind):
    found = []
    for seed in range(SEEDS):
        curve = taxonomy_curve(kind, seed)
        found.append(classify_curve(curve["loss"], curve["value"], curve["dataset"], n_bootstrap=20, seed=seed).cls)
    assert np.mean(np.array(found) == kind) >= REQUIRED_RATE, found


def test_verdict_carries_evidence_and_a_bootstrap_confidence():
    curve = taxonomy_curve("predictable", seed=1)
    verdict = classify_curve(curve["loss"], curve["value"], curve["dataset"], n_bootstrap=200, task="t")
    decoded = verdict.to_dict()
    assert list(decoded) == ["task", "class", "confidence", "evidence"]
    assert decoded["class"] == "predictable" and decoded["confidence"] >= 0.9
    evidence = decoded["evidence"]
    assert evidence["n"] == 105 and evidence["corpora"] == 3 and evidence["rule"].startswith("trend_z >= z_critical")
    low, high = evidence["r2"]["ci95"]
    assert 0.8 < low <= evidence["r2"]["value"] <= high
    assert evidence["trend_z"]["value"] > evidence["z_critical"] and sum(evidence["votes"].values()) == 1
    json.dumps(decoded, allow_nan=False)  # plain JSON


def test_corpus_offsets_are_not_noise_unless_pooled():
    curve = taxonomy_curve("predictable", seed=3)
    offsets = curve["dataset"].map({"a": -0.06, "b": 0.0, "c": 0.06})
    args = (curve["loss"], curve["value"] + offsets)
    assert classify_curve(*args, curve["dataset"], n_bootstrap=20).cls == "predictable"
    assert classify_curve(*args, None, n_bootstrap=20).cls == "noisy"


def test_degenerate_curves_are_unclassified_with_a_reason():
    few = classify_curve(np.linspace(3, 5, 6), np.linspace(0.3, 0.5, 6), n_bootstrap=10)
    assert few.cls == "unclassified" and "6 runs, at least 10" in few.evidence["reason"]
    flat = classify_curve(np.linspace(3, 5, 30), np.full(30, 0.25), n_bootstrap=10)
    assert flat.cls == "unclassified" and "constant" in flat.evidence["reason"]
    pairs = classify_curve(np.linspace(3, 5, 12), np.linspace(0.3, 0.5, 12), np.repeat(range(6), 2))
    assert pairs.cls == "unclassified" and "0 runs in corpora with at least 3 runs" in pairs.evidence["reason"]


# --- the released data ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return gadre2024.load()


@pytest.fixture(scope="module")
def verdicts(table) -> Classification:
    # the verdict is a function of the data alone; the bootstrap only sets the confidence
    return classify(table, "c4_val", n_bootstrap=20, chance=gadre2024.chance_levels())


def test_released_tasks_classified(verdicts):
    assert len(verdicts) == 46
    counts = verdicts.counts()
    assert counts == {
        "predictable": 26, "inverse": 4, "nonmonotonic": 4, "noisy": 2, "trendless": 9, "breakthrough": 1,
    }  # fmt: skip  # 26 / 46 = 57 % predictable by detectability; Lourie et al. by eye: 18 / 46 = 39 %
    by_task = {v.task: v.cls for v in verdicts}
    for task in ("hellaswag", "arc_easy", "lambada_openai", "piqa", "coqa", "squad"):
        assert by_task[task] == "predictable", task
    assert by_task["pubmed_qa_labeled"] == "breakthrough"
    assert by_task["bigbench_elementary_math_qa"] == "inverse"
    assert by_task["bigbench_strange_stories"] == "nonmonotonic"
    assert by_task["mmlu"] == "predictable"  # a 2-point rise, 10 standard errors clear of the items' noise
    assert all(v.evidence["chance"] is not None and "sampling_se" in v.evidence for v in verdicts)


def test_classify_command_json(tmp_path, table, capsys):
    path = tmp_path / "gadre.parquet"
    table.to_parquet(path)
    argv = ["classify", str(path), "--x", "c4_val", "--task", "hellaswag", "mmlu", "--bootstrap", "30", "--json"]
    assert main(argv) == 0
    decoded = json.loads(capsys.readouterr().out)
    assert [(d["task"], d["class"]) for d in decoded] == [("hellaswag", "predictable"), ("mmlu", "predictable")]
    assert all(list(d) == ["task", "class", "confidence", "evidence"] for d in decoded)
    assert decoded[0]["evidence"]["chance"] == 0.25
    assert main(["classify", str(path), "--x", "c4_val", "--task", "copa", "--bootstrap", "10"]) == 0
    out = capsys.readouterr().out
    assert "copa" in out and "1 tasks: predictable 1 (100%)" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--x", "c4"], "no final val_loss rows named 'c4'"),
        (["--x", "c4_val", "--task", "nope"], "no final task rows for nope"),
        ([], "the following arguments are required: --x"),
    ],
)
def test_classify_errors(tmp_path, table, capsys, argv, message):
    path = tmp_path / "gadre.parquet"
    table.to_parquet(path)
    assert main(["classify", str(path), *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


def test_every_class_is_a_known_one(verdicts):
    assert {v.cls for v in verdicts} <= set(CLASSES)


# --- context sensitivity -----------------------------------------------------------------------


def flip_table(seed: int = 0) -> pd.DataFrame:
    """Corpus b looks better than a on validation set v1 and worse on v2, at equal skill."""
    rng = np.random.default_rng(seed)
    rows = []
    for corpus, shift in (("a", 0.0), ("b", 0.3)):
        for i, skill in enumerate(rng.uniform(0, 3, 30)):
            run = {"run_id": f"{corpus}-{i}", "dataset": corpus, "final": True}
            rows += [
                run | {"kind": "val_loss", "name": "v1", "metric": "loss", "value": 5 - skill - shift},
                run | {"kind": "val_loss", "name": "v2", "metric": "loss", "value": 5 - skill + shift},
                run | {"kind": "task", "name": "t", "metric": "acc",
                       "value": 0.3 + 0.1 * skill + 0.005 * rng.standard_normal()},
            ]  # fmt: skip
    return to_frame(rows)


def test_context_detects_a_flip():
    frame = context_sensitivity(flip_table(), "v1", "v2", n_bootstrap=100)
    row = frame.iloc[0]
    assert (row["task"], row["corpus_a"], row["corpus_b"], row["verdict"]) == ("t", "a", "b", "flip")
    assert row["gap_1"] == pytest.approx(0.03, abs=0.005) and row["low_1"] > 0
    assert row["gap_2"] == pytest.approx(-0.03, abs=0.005) and row["high_2"] < 0
    assert frame.attrs["x"] == ("v1", "v2")
    same = context_sensitivity(flip_table(), "v1", "v1", n_bootstrap=20)
    assert same["verdict"].iloc[0] == "same order"


def test_context_on_the_released_data(table):
    frame = context_sensitivity(table, "c4_val", gadre2024.PROGRAMMING, tasks=["hellaswag"], n_bootstrap=100)
    assert len(frame) == 3  # three pairs of corpora
    c4_rpj = frame[(frame["corpus_a"] == "c4_original") & (frame["corpus_b"] == "rpj")].iloc[0]
    # Lourie et al.: on HellaSwag, C4 looks better than RedPajama against the 100-PL validation loss
    assert c4_rpj["gap_2"] > 0 and c4_rpj["low_2"] > 0


def test_context_command(tmp_path, capsys):
    path = tmp_path / "flip.parquet"
    flip_table().to_parquet(path)
    assert main(["context", str(path), "--x", "v1", "--vs", "v2", "--bootstrap", "50", "--json"]) == 0
    decoded = json.loads(capsys.readouterr().out)
    assert decoded[0]["verdict"] == "flip" and set(decoded[0]) == {
        "task", "corpus_a", "corpus_b", "gap_1", "low_1", "high_1", "gap_2", "low_2", "high_2", "verdict",
    }  # fmt: skip
    with pytest.raises(AnalysisError, match="two training corpora"):
        context_sensitivity(flip_table().query("dataset == 'a'"), "v1", "v2")
