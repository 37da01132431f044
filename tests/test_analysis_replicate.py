"""Gadre et al.'s protocol on own runs (analysis.replicate) and the seed-to-seed spread (analysis.seeds)."""

import json

import numpy as np
import pandas as pd
import pytest

from analysis import gadre2024
from analysis.classify import Noise, classify, classify_curve
from analysis.cli import main
from analysis.errors import AnalysisError
from analysis.extrapolate import Split, extrapolate
from analysis.plots import compute_label
from analysis.replicate import GADRE_EXPONENTS, replicate
from analysis.reproduce import RECORD_KEYS, reproduce, run_protocol
from analysis.schema import to_frame
from analysis.seeds import Z95, seed_means, seed_spread, widen
from analysis.synthetic import law_table, taxonomy_curve

# a ladder c1..c6 (names in size order here; the protocol orders by params) and two corpora
SIZES = {"c1": 2_000_000, "c2": 5_000_000, "c3": 12_000_000, "c4": 30_000_000, "c5": 80_000_000, "c6": 200_000_000}
LOSS = {
    "syn_en": {"alpha": 150.0, "beta": 300.0, "e": -0.25, "E": 1.7},
    "docs_en": {"alpha": 120.0, "beta": 350.0, "e": -0.27, "E": 1.9},
}
ERROR = {"epsilon": 0.75, "k": 3.0, "gamma": 0.6}
MULTIPLIERS = (5, 10, 20, 40, 80, 160, 320)
NOISE = 0.003  # relative seed-to-seed SD of the loss


def sweep(table: pd.DataFrame) -> pd.DataFrame:
    """The overtrain_micro-like grid: c1..c4 at every multiplier, c5 at M = 20 and 80, c6 at M = 20."""
    keep = table["size"].isin(["c1", "c2", "c3", "c4"]) | (table["size"] == "c6") & (table["multiplier"] == 20)
    keep |= (table["size"] == "c5") & table["multiplier"].isin([20, 80])
    return table[keep.fillna(False)].reset_index(drop=True)


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return sweep(law_table(LOSS, ERROR, SIZES, MULTIPLIERS, noise=NOISE, seed=1, seeds=3))


@pytest.fixture(scope="module")
def replication(table):
    return replicate(table, n_bootstrap=200)


def ids(dataset: str, *labels: str) -> set[str]:
    return {f"decoder-{label.split('-M')[0]}-{dataset}-m{label.split('-M')[1]}" for label in labels}


# --- roles ------------------------------------------------------------------------------------


def test_fit_set_error_fit_and_targets_are_the_protocols(replication):
    for dataset, roles in replication.roles.items():
        assert roles.fit_sizes == ("c1", "c2", "c3", "c4")
        assert set(roles.fit) == ids(dataset, "c1-M20", "c2-M20", "c3-M20", "c4-M20", "c1-M320")
        assert set(roles.error_fit) == set(roles.fit) | ids(dataset, "c5-M20")
        assert list(roles.targets) == ["c5-M20", "c5-M80", "c6-M20"]
    fits = replication.result.fits
    assert all(f.loss.n_points == 5 and f.error.n_points == 6 for f in fits.values())
    runs = replication.result.runs
    assert (runs["role"] == "unused").sum() == 2 * (4 * 7 - 5)  # fit sizes at other multipliers


def test_roles_follow_params_not_names(table):
    renamed = table.assign(size=table["size"].map({"c1": "z", "c2": "y", "c3": "x", "c4": "w", "c5": "b", "c6": "a"}))
    roles = replicate(renamed, n_bootstrap=0).roles["syn_en"]
    assert roles.fit_sizes == ("z", "y", "x", "w") and list(roles.targets) == ["b-M20", "b-M80", "a-M20"]


def test_smallest_size_uses_its_largest_multiplier_up_to_320(table):
    without = table[~((table["size"] == "c1") & (table["multiplier"] == 320)).fillna(False)]
    roles = replicate(without, n_bootstrap=0).roles["docs_en"]
    assert ids("docs_en", "c1-M160") <= set(roles.fit)


def test_fit_multipliers_adds_the_fit_sizes_within_the_fit_compute(table):
    roles = replicate(table, n_bootstrap=0, fit_multipliers=True).roles["syn_en"]
    budget = max(6 * SIZES["c4"] ** 2 * 20, 6 * SIZES["c1"] ** 2 * 320)
    expected = {
        label for s in ("c1", "c2", "c3", "c4") for m in MULTIPLIERS
        if 6 * SIZES[s] ** 2 * m <= budget and f"{s}-M{m}" not in ("c1-M20", "c2-M20", "c3-M20", "c4-M20", "c1-M320")
        for label in [f"{s}-M{m}"]
    }  # fmt: skip
    assert set(roles.added) == ids("syn_en", *expected) and len(roles.added) == 2 + 4 + 6 + 5  # c4 .. c1
    assert set(roles.added) <= set(roles.fit) and list(roles.targets) == ["c5-M20", "c5-M80", "c6-M20"]


MISSING = {
    "c2 at M = 20": (
        lambda t: (t["size"] == "c2") & (t["multiplier"] == 20),
        "dataset docs_en: no run of size c2 at M = 20; the protocol fits the 4 smallest sizes (c1, c2, c3, c4) there",
    ),
    "c1 over-trained": (
        lambda t: (t["size"] == "c1") & (t["multiplier"] > 20),
        "dataset docs_en: the smallest size c1 has no run with 20 < M <= 320",
    ),
    "c5 at M = 20": (
        lambda t: (t["size"] == "c5") & (t["multiplier"] == 20),
        "dataset docs_en: no run of size c5 at M = 20; the protocol fits Err(L) on the loss fit runs and the next",
    ),
}


@pytest.mark.parametrize("what", list(MISSING))
def test_missing_runs_are_one_line_errors(table, what):
    gone, message = MISSING[what]
    with pytest.raises(AnalysisError) as err:
        replicate(table[~gone(table).fillna(False)], n_bootstrap=0)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_without_task_rows_the_next_size_at_m20_is_not_needed(table):
    losses = table[(table["kind"] == "val_loss") & ~((table["size"] == "c5") & (table["multiplier"] == 20))]
    result = replicate(losses, n_bootstrap=0)
    assert list(result.roles["syn_en"].targets) == ["c5-M80", "c6-M20"]
    assert {r["quantity"] for r in result.records} == {"loss"}


def test_too_few_sizes_is_an_error(table):
    with pytest.raises(AnalysisError, match=r"dataset docs_en: 4 sizes \(c1, c2, c3, c4\); the protocol needs"):
        replicate(table[table["size"].isin(["c1", "c2", "c3", "c4"])], n_bootstrap=0)


# --- fits, predictions, records ---------------------------------------------------------------


def test_parameters_recovered_and_targets_predicted(replication):
    for dataset, truth in LOSS.items():
        params = replication.result.fits[dataset].loss.params
        assert params["e"] == pytest.approx(truth["e"], abs=0.02), dataset
        assert params["E"] == pytest.approx(truth["E"], abs=0.1), dataset
    for record in replication.records:
        assert record["rel_error"] < 0.01, record
        assert record["ci_low"] < record["observed"] < record["ci_high"], record


def test_records_have_reproduce_keys_and_the_error_fit_target_has_loss_only(replication):
    records = replication.records
    assert all(tuple(r) == RECORD_KEYS for r in records)
    assert len(records) == 2 * (3 * 2 - 1)
    quantities = {(r["dataset"], r["target"]): set() for r in records}
    for r in records:
        quantities[r["dataset"], r["target"]].add(r["quantity"])
    assert quantities["syn_en", "c5-M20"] == {"loss"} and quantities["syn_en", "c6-M20"] == {"loss", "err"}


def test_summary_names_roles_ratios_exponents_and_noise(replication):
    text = replication.summary()
    assert "syn_en: loss law on 5 runs (c1-M20, c2-M20, c3-M20, c4-M20, c1-M320); Err(L) on those and c5-M20" in text
    assert "Chinchilla (approach 3): alpha (N) 0.34, beta (D) 0.28" in text and "rpj 0.273" in text
    assert "seed SD, added to the intervals in quadrature: loss 0.3" in text
    assert "; loss SD measured on c1-M5, " in text and "c6-M20" in text and "fit sizes only" not in text
    table = replication.table()
    ratio = table.loc[(table["dataset"] == "syn_en") & (table["target"] == "c6-M20"), "compute_ratio"].iloc[0]
    assert ratio == f"{(SIZES['c6'] / SIZES['c4']) ** 2:.3g}x"  # C = 6 M N^2; the largest fit run is c4 at M = 20
    assert set(table["seeds"]) == {3}


def test_a_seed_sd_measured_on_the_fit_sizes_alone_says_so(table):
    """The pooled SD assumes one noise level whatever the size: with no target repeated, nothing checks it."""
    once = table[~table["size"].isin(["c5", "c6"]) | (table["seed"] == 0)]
    text = replicate(once, n_bootstrap=0).noise("syn_en")
    assert "c5-M20" not in text and "c6-M20" not in text
    assert text.endswith("(fit sizes only: the targets' seed noise is assumed the same, not measured)")


def test_intervals_are_the_bootstrap_widened_by_the_seed_noise(table, replication):
    means, _ = seed_means(table)
    roles = replication.roles
    split = Split(
        heldout=tuple(r for x in roles.values() for r in x.targets.values()),
        fit=tuple(r for x in roles.values() for r in x.fit),
        error_fit=tuple(r for x in roles.values() for r in x.error_fit),
    )
    plain = extrapolate(means, "overtrain", split=split, n_bootstrap=200).runs.set_index("run_id")
    widened = replication.result.runs.set_index("run_id")
    for dataset, role in roles.items():
        rel_sd = replication.spread.get("loss", dataset)["rel_sd"]
        for run_id in role.targets.values():
            predicted = plain.at[run_id, "predicted"]
            seed_half = Z95 * rel_sd * predicted / np.sqrt(3)
            for bound, sign in (("ci_low", -1), ("ci_high", 1)):
                half = sign * (plain.at[run_id, bound] - predicted)
                assert sign * (widened.at[run_id, bound] - predicted) == pytest.approx(np.hypot(half, seed_half))


def test_on_the_released_data_the_roles_are_the_papers_and_the_numbers_reproduce():
    released = gadre2024.load()
    mine = replicate(released, x=gadre2024.X, task=list(gadre2024.SUBSET17), n_bootstrap=0)
    for dataset, roles in mine.roles.items():
        assert set(roles.fit) == {
            f"decoder-{s}-{dataset}-m{m}" for s, ms in gadre2024.LOSS_FIT.items() for m in ms
        }  # fmt: skip
        assert set(roles.targets) == {"1.4B-M20", *gadre2024.heldout_runs(dataset)}
    theirs = {(r["dataset"], r["target"], r["quantity"]): r for r in reproduce(released, n_bootstrap=0)}
    found = 0
    for record in mine.records:
        quantity = {"loss": "loss", "err": "err17"}[record["quantity"]]
        if (key := (record["dataset"], record["target"], quantity)) in theirs:
            assert record["predicted"] == pytest.approx(theirs[key]["predicted"], rel=1e-9)
            found += 1
    assert found == 3 * 2 * 2
    assert "seed SD: not measured" in mine.summary()


def test_gadre_exponents_are_the_refit_of_their_runs():
    fits = run_protocol(gadre2024.load(), n_bootstrap=0).fits
    assert {d: round(-f.loss.params["e"], 4) for d, f in fits.items()} == GADRE_EXPONENTS


def test_replicate_command(tmp_path, table, capsys):
    path = tmp_path / "runs.parquet"
    table.to_parquet(path)
    assert main(["replicate", str(path), "--bootstrap", "30", "--json"]) == 0
    decoded = json.loads(capsys.readouterr().out)
    assert [tuple(r) for r in decoded] == [RECORD_KEYS] * 10
    assert main(["replicate", str(path), "--bootstrap", "0"]) == 0
    assert "compute_ratio" in capsys.readouterr().out
    small = tmp_path / "small.parquet"
    table[~((table["size"] == "c5") & (table["multiplier"] == 20)).fillna(False)].to_parquet(small)
    assert main(["replicate", str(small)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(small) in err and "no run of size c5 at M = 20; the protocol fits Err(L)" in err
    assert main(["replicate", str(path), "--arch", "t5"]) == 2
    assert "no runs of arch 't5'; archs: decoder" in capsys.readouterr().err


def test_replicate_command_holds_the_error_asymptote_at_chance(tmp_path, table, capsys):
    path = tmp_path / "runs.parquet"
    table.assign(chance=np.where(table["kind"] == "task", 0.25, np.nan)).to_parquet(path)  # chance error 0.75
    assert main(["replicate", str(path), "--bootstrap", "20", "--error-asymptote", "chance"]) == 0
    out = capsys.readouterr().out
    assert "loss_to_error[epsilon=0.75] fit on" in out and "(epsilon = 0.75 fixed) with k=" in out
    assert main(["replicate", str(path), "--bootstrap", "0", "--error-asymptote", "chance", "--json"]) == 0
    errors = [r["rel_error"] for r in json.loads(capsys.readouterr().out) if r["quantity"] == "err"]
    assert errors and max(errors) < 0.01  # the synthetic law's epsilon is 0.75: the held law is the true one


# --- seeds ------------------------------------------------------------------------------------


def spread_table() -> pd.DataFrame:
    """Two configurations: 3 seeds of loss 3.0, 3.1, 3.2 (acc 0.5, 0.6, 0.7) and 2 of 2.0, 2.2 (acc 0.6, 0.6)."""
    rows = []
    for size, losses, accs in (("s1", (3.0, 3.1, 3.2), (0.5, 0.6, 0.7)), ("s2", (2.0, 2.2), (0.6, 0.6))):
        for seed, (loss, acc) in enumerate(zip(losses, accs, strict=True)):
            run = dict(run_id=f"{size}-seed{seed}", arch="decoder", size=size, dataset="d", multiplier=20.0,
                       seed=seed, params=1000, tokens=20000, final=True)  # fmt: skip
            rows += [run | dict(kind="val_loss", name="d", metric="loss", value=loss),
                     run | dict(kind="task", name="t", metric="acc", value=acc, stderr=0.01)]  # fmt: skip
    return to_frame(rows)


def test_seed_spread_of_a_known_table():
    spread = seed_spread(spread_table())
    loss = spread.get("loss", "d")
    assert loss["configs"] == 2 and loss["runs"] == 5 and loss["dof"] == 3
    assert loss["sd"] == pytest.approx(np.sqrt((2 * 0.1**2 + 1 * 0.02) / 3))
    assert loss["rel_sd"] == pytest.approx(np.sqrt((2 * (0.1 / 3.1) ** 2 + (np.sqrt(0.02) / 2.1) ** 2) / 3))
    assert spread.get("t")["sd"] == pytest.approx(np.sqrt(2 * 0.1**2 / 3))
    assert spread.task_sd() == {"t": pytest.approx(np.sqrt(2 * 0.01 / 3))}
    assert "2 configurations with repeated seeds" in spread.summary()


def test_seed_means_average_the_repeats():
    means, seeds = seed_means(spread_table())
    loss = means[means["kind"] == "val_loss"].set_index("run_id")["value"]
    assert loss.to_dict() == {"decoder-s1-d-m20": pytest.approx(3.1), "decoder-s2-d-m20": pytest.approx(2.1)}
    assert seeds.to_dict() == {"decoder-s1-d-m20": 3, "decoder-s2-d-m20": 2}


def test_repeats_that_differ_in_something_else_are_refused():
    doubled = pd.concat([spread_table(), spread_table().assign(run_id=lambda t: t["run_id"] + "-lr0.01")])
    with pytest.raises(AnalysisError, match=r"share configuration decoder-s1-d-m20 and seed: .*\(a sweep axis\?\)"):
        seed_spread(doubled)


def test_runs_of_one_configuration_at_two_lrs_are_not_seeds():
    """A configuration's runs at different seeds and different LRs (a sweep axis) would pool as seeds: refused
    with the setting named. Rows written before a setting's column (null) do not count as another value."""
    table = spread_table().assign(lr=0.003)
    other = table["run_id"] == table["run_id"].iloc[0]
    with pytest.raises(AnalysisError, match=r"share configuration decoder-s1-d-m20 but differ in lr \(0.0015, 0.003\)"):
        seed_spread(table.assign(lr=table["lr"].mask(other, 0.0015)))
    older = seed_spread(table.assign(lr=table["lr"].mask(other, None)))
    assert older.get("loss", "d")["runs"] == 5


def test_widen_adds_the_seed_noise_in_quadrature():
    runs = pd.DataFrame({"run_id": ["a", "b", "c"], "p": [1.0, 1.0, 1.0], "lo": [0.7, 0.9, 0.9], "hi": [1.4, 1.1, 1.1]})
    noise = pd.Series({"a": 0.2, "b": 0.1})  # c: unmeasured
    widen(runs, "p", ("lo", "hi"), noise, pd.Series({"a": 4, "b": 1}))
    assert runs["lo"].tolist() == pytest.approx([1 - np.hypot(0.3, Z95 * 0.1), 1 - np.hypot(0.1, Z95 * 0.1), 0.9])
    assert runs["hi"].tolist() == pytest.approx([1 + np.hypot(0.4, Z95 * 0.1), 1 + np.hypot(0.1, Z95 * 0.1), 1.1])


# --- the classifier judged against the seed SD ------------------------------------------------


def test_a_predictable_curve_stays_predictable_beside_a_large_seed_sd_and_is_trendless_beside_a_huge_one():
    # detectability (docs/analysis.md): scatter within the noise is not "noisy"; a trend lost in it is trendless
    curve = taxonomy_curve("predictable", seed=1)
    args = (curve["loss"], curve["value"], curve["dataset"], 50)
    assert classify_curve(*args).cls == "predictable"
    assert classify_curve(*args, noise=Noise("seed", 0.005)).cls == "predictable"  # scatter 2x, but r2 0.99
    wide = classify_curve(*args, noise=Noise("seed", 0.08))
    assert wide.cls == "predictable" and wide.evidence["noise"] == {"source": "seed", "sd": 0.08}
    assert wide.evidence["excess"]["value"] < 1 and wide.evidence["trend_z"]["value"] > 3
    assert classify_curve(*args, noise=Noise("seed", 1.0)).cls == "trendless"  # change 0.37, SE about 0.34
    assert classify_curve(*args, noise=Noise("binomial", 1.0)).cls == "trendless"  # the items' error is judged too


def test_classify_measures_the_seed_sd_on_repeated_seeds_and_says_so():
    rng = np.random.default_rng(0)
    rows = []
    for corpus in ("a", "b", "c"):
        for i, loss in enumerate(rng.uniform(2.4, 5.5, 12)):
            for seed in range(3):
                run = dict(run_id=f"{corpus}{i}-seed{seed}", arch="decoder", size=f"s{i}", dataset=corpus,
                           multiplier=20.0, seed=seed, params=1000 * (i + 1), final=True)  # fmt: skip
                accuracy = 0.22 + 2.5 * np.exp(-0.75 * loss)
                quiet, loud = accuracy + 0.002 * seed, accuracy + 0.12 * (seed - 1)
                rows += [run | dict(kind="val_loss", name="v", metric="loss", value=loss),
                         run | dict(kind="task", name="quiet", metric="acc", value=quiet),
                         run | dict(kind="task", name="loud", metric="acc", value=loud)]  # fmt: skip
    verdicts = {v.task: v for v in classify(to_frame(rows), "v", n_bootstrap=20)}
    assert verdicts["quiet"].cls == "predictable" and verdicts["quiet"].noise_label() == "seed 0.002"
    # its scatter is the seed spread itself, and the trend stands clear of it: predictable by detectability
    assert verdicts["loud"].cls == "predictable" and verdicts["loud"].noise_label() == "seed 0.12"
    assert verdicts["loud"].evidence["excess"]["value"] < 2
    summary = classify(to_frame(rows), "v", n_bootstrap=0).summary()
    assert "noise of one run's score: seed 2" in summary


def test_a_seed_sd_below_the_items_binomial_error_is_judged_against_the_binomial_error():
    # seeds of one configuration that answer the items alike (seed SD 0.002) while models along the curve
    # scatter by the items' sampling error (1000 items at p = 0.5: SE 0.0158): a flat task, as random_label
    rng = np.random.default_rng(0)
    rows, se = [], float(np.sqrt(0.25 / 1000))
    for corpus in ("a", "b"):
        for i, loss in enumerate(np.linspace(2.4, 5.5, 15)):
            accuracy = 0.5 + rng.normal(0.0, se)
            for seed in range(3 if i in (0, 7, 14) else 1):  # repeats at three sizes, as the replication's
                run = dict(run_id=f"{corpus}{i}-seed{seed}", arch="decoder", size=f"s{i}", dataset=corpus,
                           multiplier=20.0, seed=seed, params=1000 * (i + 1), final=True)  # fmt: skip
                rows += [run | dict(kind="val_loss", name="v", metric="loss", value=loss),
                         run | dict(kind="task", name="flat", metric="acc", value=accuracy + 0.002 * (seed - 1),
                                    stderr=se)]  # fmt: skip
    (verdict,) = classify(to_frame(rows), "v", n_bootstrap=200)
    assert verdict.noise_label() == "binomial 0.0158 (seed 0.002)"
    assert verdict.cls == "trendless" and verdict.confidence >= 0.9
    assert verdict.evidence["excess"]["value"] < 2  # the scatter is the binomial error's, not beyond it
    judged_on_seeds = classify_curve(*_curve(verdict), n_bootstrap=200, noise=Noise("seed", 0.002))
    assert judged_on_seeds.evidence["excess"]["value"] > 20  # 60x the seed variance: noisy or nonmonotonic ...
    assert judged_on_seeds.confidence < 0.7  # ... in many resamples
    assert Noise.larger(0.03, 0.0158) == Noise("seed", 0.03, 0.03, 0.0158)
    assert Noise.larger(float("nan"), 0.0158).label() == "binomial 0.0158"
    assert Noise.larger(float("nan"), float("nan")).source == "none"


def _curve(verdict):
    runs = verdict.curve["runs"]
    return runs["loss"].to_numpy(), runs["value"].to_numpy(), runs["dataset"].to_numpy()


def test_report_shows_the_seed_spread_and_the_noise_of_each_verdict(tmp_path, table):
    path, out = tmp_path / "runs.parquet", tmp_path / "report"
    table.to_parquet(path)
    assert main(["report", str(path), "--out", str(out), "--classify-bootstrap", "10"]) == 0
    html = (out / "index.html").read_text()
    assert "Seed-to-seed spread" in html and "<th>rel_sd</th>" in html and "<th>noise</th>" in html
    assert "seed 0.00" in html  # the task verdicts were judged against the measured seed SD


def test_a_chained_error_interval_widened_by_seed_noise_is_clipped_again():
    from analysis.replicate import _clip_error_interval

    runs = pd.DataFrame({"error_ci_low": [-0.2, 0.1, -0.5], "error_ci_high": [0.6, 0.3, 1.4],
                         "error_ci_clipped": [False, False, True]})  # fmt: skip
    _clip_error_interval(runs)
    assert runs["error_ci_low"].tolist() == [0.0, 0.1, 0.0] and runs["error_ci_high"].tolist() == [0.6, 0.3, 1.0]
    assert runs["error_ci_clipped"].tolist() == [True, False, True]
    assert runs["error_ci_uninformative"].tolist() == [False, False, True]


# --- counting N without the embeddings (--params nonembed) --------------------------------------

EMBEDDINGS = 3_000_000  # a run's embedding params: 60 % of c1's total, 1.5 % of c6's


@pytest.fixture(scope="module")
def embedded() -> pd.DataFrame:
    """Runs whose loss follows the law in non-embedding N, trained at M times their total params."""
    return sweep(law_table({"syn_en": LOSS["syn_en"]}, ERROR, SIZES, MULTIPLIERS, embeddings=EMBEDDINGS))


def test_nonembed_recovers_the_law_that_total_params_miss(embedded):
    counted = replicate(embedded, n_bootstrap=0, params="nonembed")
    fit = counted.result.fits["syn_en"].loss
    assert fit.status == "ok"
    for name, value in LOSS["syn_en"].items():
        assert fit.params[name] == pytest.approx(value, rel=1e-4)
    loss = [r["rel_error"] for r in counted.records if r["quantity"] == "loss"]
    assert len(loss) == 3 and max(loss) < 1e-6
    total = replicate(embedded, n_bootstrap=0)  # the same runs, N with its embeddings
    assert max(r["rel_error"] for r in total.records if r["quantity"] == "loss") > 3e-3
    runs = counted.result.runs.set_index("run_id")
    c6 = runs.loc[ids("syn_en", "c6-M20").pop()]
    assert c6["params"] == SIZES["c6"] and c6["multiplier"] == 20  # the design's label stays
    assert c6["tokens_per_param"] == pytest.approx(20 * (SIZES["c6"] + EMBEDDINGS) / SIZES["c6"])
    assert c6["flops"] == pytest.approx(6 * SIZES["c6"] * c6["tokens"])
    assert "N counted without the embeddings" in counted.summary()
    assert "N without embeddings" in compute_label(counted.result)  # the figures' compute axis says it too


def test_nonembed_without_the_column_is_a_one_line_error(embedded):
    with pytest.raises(AnalysisError, match="params=nonembed: no params_nonembed for run"):
        extrapolate(embedded.assign(params_nonembed=pd.NA), params="nonembed")
    with pytest.raises(AnalysisError, match="params='all': choose one of total, nonembed"):
        extrapolate(embedded, params="all")


def test_replicate_and_fit_commands_take_params(tmp_path, embedded, capsys):
    path = tmp_path / "results.parquet"
    embedded.to_parquet(path)
    assert main(["replicate", str(path), "--params", "nonembed", "--bootstrap", "0", "--json"]) == 0
    records = json.loads(capsys.readouterr().out)
    assert max(r["rel_error"] for r in records if r["quantity"] == "loss") < 1e-6
    assert main(["fit", str(path), "--params", "nonembed"]) == 0
    assert "N counted: without the embeddings" in capsys.readouterr().out
