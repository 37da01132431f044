"""The taxonomy judged by detectability (docs/analysis.md, "Classifying task curves"): a trend counts when it
stands clear of the noise of one run's score, a curve is noisy when it scatters beyond that noise; the band of
the share of predictable tasks over the defensible choices."""

import json

import numpy as np
import pandas as pd
import pytest

from analysis import gadre2024
from analysis.classify import (
    BAND_CRITERIA,
    Criteria,
    Noise,
    checkpoints_as_runs,
    classify,
    classify_curve,
    taxonomy_band,
)
from analysis.cli import main
from analysis.schema import to_frame
from analysis.synthetic import TAXONOMY, taxonomy_curve

RUNS = 60
SMALL_TREND = 0.02  # accuracy points across the whole loss range: below the old fixed 2-point flatness bar


def binomial_se(p: float, items: int) -> float:
    return float(np.sqrt(p * (1 - p) / items))


def small_trend(items: int, seed: int = 0, extra: float = 0.0) -> tuple[np.ndarray, np.ndarray, Noise]:
    """A linear 2-point rise over the loss range, each run's score drawn with the binomial error of `items`
    items plus `extra` scatter of its own; the noise the classifier is told is the binomial one."""
    rng = np.random.default_rng(seed)
    loss = rng.uniform(2.4, 5.5, RUNS)
    accuracy = 0.30 + SMALL_TREND * (5.5 - loss) / 3.1
    se = binomial_se(0.3, items)
    value = accuracy + se * rng.standard_normal(RUNS) + extra * rng.standard_normal(RUNS)
    return loss, value, Noise("binomial", se)


@pytest.mark.parametrize("seed", range(5))
def test_a_small_clean_trend_with_many_items_is_predictable(seed):
    loss, value, noise = small_trend(items=20_000, seed=seed)
    verdict = classify_curve(loss, value, n_bootstrap=20, seed=seed, noise=noise)
    assert verdict.cls == "predictable", verdict.evidence
    assert verdict.evidence["trend_z"]["value"] > verdict.evidence["z_critical"]


def test_the_same_trend_with_few_items_is_trendless():
    # its z is about 0.7 (slope 0.02, standard error 0.065 / sqrt(60 / 12)): about 3 % of draws pass a 1 % test
    found = []
    for seed in range(20):
        loss, value, noise = small_trend(items=50, seed=seed)
        found.append(classify_curve(loss, value, n_bootstrap=0, seed=seed, noise=noise).cls)
    assert found.count("trendless") >= 17, found


def test_scatter_beyond_the_binomial_error_is_noisy_and_within_it_is_not():
    curve = taxonomy_curve("noisy", seed=2)  # the predictable trend with 8 points of scatter
    args = (curve["loss"], curve["value"], curve["dataset"], 20)
    noisy = classify_curve(*args, noise=Noise("binomial", 0.01))  # the items explain 1 point of it
    assert noisy.cls == "noisy" and noisy.evidence["excess"]["value"] > 30
    assert noisy.evidence["scatter_p"]["value"] < 1e-6
    # told that one run's score carries 8 points of noise, the same scatter is no more than the noise
    assert classify_curve(*args, noise=Noise("binomial", 0.08)).cls == "predictable"


def test_a_precise_task_scattering_a_point_about_a_large_trend_is_predictable():
    curve = taxonomy_curve("predictable", seed=4)  # 37-point trend, 1 point of scatter
    verdict = classify_curve(curve["loss"], curve["value"], curve["dataset"], 20, noise=Noise("binomial", 0.002))
    assert verdict.evidence["excess"]["value"] > 10  # beyond the items' noise ...
    assert verdict.cls == "predictable"  # ... but small beside the trend (r2 >= noisy_r2)
    pure = Criteria(noisy_r2=1.0)  # the chi-square alone
    assert classify_curve(curve["loss"], curve["value"], curve["dataset"], 20, criteria=pure,
                          noise=Noise("binomial", 0.002)).cls == "noisy"  # fmt: skip


@pytest.mark.parametrize("kind", list(TAXONOMY))
@pytest.mark.parametrize("sd", [0.005, 0.01])
def test_each_class_at_two_noise_levels(kind, sd):
    found = []
    for seed in range(10):
        curve = taxonomy_curve(kind, seed)
        verdict = classify_curve(curve["loss"], curve["value"], curve["dataset"], 10, seed, noise=Noise("binomial", sd))
        found.append(verdict.cls)
    assert np.mean(np.array(found) == kind) >= 0.9, found


def test_unknown_noise_judges_the_trend_against_the_scatter_and_says_so():
    # without the items' error the small clean trend cannot be told from scatter: r2 decides (0.76 < 0.8)
    loss, value, _ = small_trend(items=20_000)
    verdict = classify_curve(loss, value, n_bootstrap=10)
    assert verdict.evidence["judged"].startswith("residual scatter") and verdict.evidence["excess"]["value"] is None
    assert verdict.cls == "noisy" and verdict.evidence["r2"]["value"] < 0.8


def test_the_item_count_gives_the_binomial_error_when_rows_have_no_stderr():
    loss, value, noise = small_trend(items=100)
    rows = []
    for i, (x, y) in enumerate(zip(loss, value, strict=True)):
        run = dict(run_id=f"r{i}", dataset="d", final=True, params=1e6 * (i + 1), multiplier=20.0)
        rows += [run | dict(kind="val_loss", name="v", metric="loss", value=x),
                 run | dict(kind="task", name="t", metric="acc", value=y)]  # fmt: skip

    table = to_frame(rows)
    (unknown,) = classify(table, "v", n_bootstrap=0)
    (counted,) = classify(table, "v", n_bootstrap=0, items={"t": 100})
    assert unknown.noise_label() == "none" and counted.noise_label().startswith("binomial 0.04")
    assert counted.cls == "trendless"


# --- the band ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return gadre2024.load()


@pytest.fixture(scope="module")
def band(table):
    return taxonomy_band(table, ["c4_val"])


def test_band_spans_the_choices_and_holds_the_default(band, table):
    rows = band.rows
    combos = int(np.prod([len(v) for v in BAND_CRITERIA.values()]))
    assert len(rows) == 2 * combos and set(rows["pooled"]) == {False, True}
    default = rows[(rows["alpha"] == 0.01) & (rows["max_excess"] == 4.0) & (rows["noisy_r2"] == 0.8) & ~rows["pooled"]]
    verdicts = classify(table, "c4_val", n_bootstrap=0)
    assert default["predictable"].item() == verdicts.counts()["predictable"] == 26
    assert rows["share"].min() <= 26 / 46 <= rows["share"].max()
    text = band.summary()
    assert "all: predictable" in text and "Lourie et al.: 39 %" in text and "x = c4_val, pooled" in text


def test_band_command_json(table, tmp_path, capsys):
    path = tmp_path / "gadre.parquet"
    table.to_parquet(path)
    assert main(["taxonomy-band", str(path), "--x", "c4_val", "--task", "hellaswag", "mmlu", "bbq", "--json"]) == 0
    decoded = json.loads(capsys.readouterr().out)
    assert decoded["paper_share"] == 0.39 and set(decoded["subsets"]) == {"all"}
    assert 0 <= decoded["subsets"]["all"]["min"] <= decoded["subsets"]["all"]["max"] <= 1


def test_checkpoints_become_runs_of_their_own():
    rows = []
    for step in (10, 20, 30):
        base = dict(run_id="m", dataset="d", step=step, final=step == 30)
        rows += [base | dict(kind="val_loss", name="v", value=4.0 - step / 100), base | dict(kind="task", name="t")]
    rows.append(dict(run_id="m", dataset="d", step=40, final=False, kind="val_loss", name="v", value=3.5))
    out = checkpoints_as_runs(pd.DataFrame(rows), "m")
    assert sorted(out["run_id"].unique()) == ["m@10", "m@20", "m@30"] and out["final"].all()
