"""What a replication shows, in words: the sentences printed under `analyze replicate`'s numbers and in the
report's "What this shows" section.

Every sentence is computed from the fits, the held-out records, the seed spread and the task verdicts; none is
canned. Each says what worked and what did not, and for a miss where it comes from: the distance of the
extrapolation, a fitted irreducible loss above what the targets reached, N and D exponents that disagree,
the error law itself or the loss prediction fed into it, saturated tasks, seed noise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd

from analysis.diagnostics import constraint_warnings
from analysis.replicate import ERR, GADRE_EXPONENTS, Replication, replicate
from analysis.seeds import LOSS
from analysis.verdicts import MIN_INTENDED_CONFIDENCE, Classification

WIDE_INTERVAL = 0.25  # a loss interval wider than +-25 % of the observed loss says little
FAR_EXPONENT = 2.0  # an exponent more than 2x (or under half) natural language's is called far from it


def replication_story(rep: Replication) -> list[str]:
    """The sentences about the loss and the chained error, per training dataset."""
    lines: list[str] = []
    for dataset in rep.roles:
        lines += _loss_sentences(rep, dataset) + _error_sentences(rep, dataset)
    return lines


def task_story(verdicts: Classification, task_chains: pd.DataFrame | None = None) -> list[str]:
    """The sentences about the designed tasks' verdicts and each predictable task's own chained error
    (task_chains: `chained_task_errors`' rows)."""
    lines = _verdict_sentences(verdicts)
    if task_chains is not None and not task_chains.empty:
        lines += _task_chain_sentences(task_chains)
    return lines


def chained_task_errors(table: pd.DataFrame, tasks: Sequence[str], **replicate_options) -> pd.DataFrame:
    """Each task's own Err(L) chained to the targets (the protocol with `task=name` on the training datasets
    whose runs were scored on it, no bootstrap): columns
    task, dataset, target, observed, predicted, rel_error (the chained one) and at_observed_rel_error."""
    rows = []
    for task in tasks:
        scored = table.loc[(table["kind"] == "task") & (table["name"] == task), "dataset"].unique()
        mine = replicate(table[table["dataset"].isin(scored)], task=[task], n_bootstrap=0, **replicate_options)
        runs = mine.result.runs.set_index("run_id")
        for dataset, roles in mine.roles.items():
            for target, run_id in roles.targets.items():
                if run_id in roles.error_fit or "predicted_error" not in runs:
                    continue
                row = runs.loc[run_id]
                rows.append({"task": task, "dataset": dataset, "target": target,
                             "observed": row["observed_error"], "predicted": row["predicted_error"],
                             "rel_error": row["error_rel_error"],
                             "at_observed_rel_error": row["error_at_observed_rel_error"]})  # fmt: skip
    return pd.DataFrame(rows)


def _pct(value: float) -> str:
    return f"{100 * value:.1f} %"


def _loss_sentences(rep: Replication, dataset: str) -> list[str]:
    fits, runs = rep.result.fits[dataset], rep.result.runs.set_index("run_id")
    if not fits.loss.fitted:
        return [f"{dataset}: the over-training law could not be fitted ({fits.loss.reason}); nothing is predicted."]
    noise = rep.spread.get(LOSS, dataset)
    seed_sd = float(noise["rel_sd"]) if noise is not None else math.nan
    lines = []
    for target, run_id in rep.roles[dataset].targets.items():
        row = runs.loc[run_id]
        rel = float(row["rel_error"])
        text = (f"{dataset}: the over-training law predicts {target} ({row['compute_ratio']:.3g}x the largest fit "
                f"run's compute) at {row['predicted']:.4g} against {row['observed']:.4g} observed: "
                f"{_pct(abs(rel))} {'high' if row['predicted'] > row['observed'] else 'low'}")  # fmt: skip
        if (floor := rep.result.floors.get(dataset)) is not None and row["observed"] > floor:
            left = row["observed"] - floor  # what a model can still learn: a relative error of the loss hides it
            text += (f" ({_pct(abs(row['predicted'] - row['observed']) / left)} of the {left:.3g} the loss lies "
                     f"above the text's entropy {floor:.3g})")  # fmt: skip
        if not math.isnan(seed_sd):
            text += f", {abs(rel) / seed_sd:.2g} times the seed-to-seed SD of the loss ({_pct(seed_sd)})"
        low, high = row.get("ci_low", math.nan), row.get("ci_high", math.nan)
        if not (pd.isna(low) or pd.isna(high)):
            covered = low <= row["observed"] <= high
            text += f"; its 95 % interval [{low:.3g}, {high:.3g}] {'covers' if covered else 'misses'} it"
            if (high - low) / 2 > WIDE_INTERVAL * row["observed"]:
                text += f", but it is ±{_pct((high - low) / 2 / row['observed'])} wide and says little"
        lines.append(text + ".")
    lines += _law_shape(rep, dataset, runs)
    return lines


def _law_shape(rep: Replication, dataset: str, runs: pd.DataFrame) -> list[str]:
    """Why the law misses, when the fit itself says so: E above the targets, an exponent far from language's."""
    fits, lines = rep.result.fits[dataset], []
    if broken := constraint_warnings(fits.loss):
        return [f"{dataset}: {'; '.join(broken)}. Its irreducible loss and exponent mean nothing, and its "
                "predictions extrapolate a curve of the wrong shape."]  # fmt: skip
    E = fits.loss.params.get("E")
    below = [t for t, r in rep.roles[dataset].targets.items() if E is not None and runs.at[r, "observed"] < E]
    if below:
        lines.append(f"{dataset}: the fitted irreducible loss E = {E:.3g} lies above what {', '.join(below)} reached: "
                     "the fit runs flatten sooner than the larger runs do, so the law bends too early and "
                     "predicts them too high.")  # fmt: skip
    exponent = -fits.loss.params.get("e", math.nan)
    language = sum(GADRE_EXPONENTS.values()) / len(GADRE_EXPONENTS)
    if exponent > FAR_EXPONENT * language or exponent < language / FAR_EXPONENT:
        lines.append(f"{dataset}: the fitted exponent of N and D is {exponent:.3g}, against {language:.2g} on "
                     "the over-training study's natural-language corpora: these runs do not yet scale as "
                     "language models of natural text do.")  # fmt: skip
    return lines


def _error_sentences(rep: Replication, dataset: str) -> list[str]:
    fits = rep.result.fits[dataset]
    if fits.error is None or rep.result.target is None:
        return []
    runs, lines = rep.result.runs.set_index("run_id"), []
    for target, run_id in rep.roles[dataset].targets.items():
        if run_id in rep.roles[dataset].error_fit:
            continue
        row = runs.loc[run_id]
        observed, chained, alone = row["observed_error"], row["predicted_error"], row["error_at_observed"]
        if pd.isna(chained):
            continue
        text = (f"{dataset}: downstream ({rep.result.target}), {target}: chained through the predicted loss the "
                f"error is {chained:.3g} against {observed:.3g} observed")  # fmt: skip
        if observed == 0:
            text += ("; the run answers every item right, so a relative error is undefined: the tasks saturate "
                     "before this target")  # fmt: skip
        else:
            text += f" ({_pct(abs(row['error_rel_error']))} off)"
        if not pd.isna(alone):
            text += f"; the error law alone, at the observed loss, gives {alone:.3g}"
            if observed > 0:
                alone_rel, chained_rel = abs(row["error_at_observed_rel_error"]), abs(row["error_rel_error"])
                text += f" ({_pct(alone_rel)} off)"
                text += _error_cause(alone_rel, chained_rel)
        if not 0 <= chained <= 1:
            text += "; the chained value lies outside [0, 1]"
        lines.append(text + _error_noise(rep, dataset, run_id, observed) + ".")
    return lines


def _error_cause(alone_rel: float, chained_rel: float) -> str:
    """Where a chained miss comes from. The chained prediction is the law alone moved by the loss miss; when it
    lands much nearer the observed error than the law alone, that move went the other way: the misses cancel."""
    if alone_rel < chained_rel / 2:
        return ": the miss comes mostly from the loss prediction fed into it"
    if chained_rel < alone_rel / 2:
        return (": the error law itself misses, by more than the chained prediction does: the loss prediction's "
                "miss moves the error the other way and the two cancel, so the chained figure does not show that "
                "the error law holds")  # fmt: skip
    return ": the error law itself misses"


def _error_noise(rep: Replication, dataset: str, run_id: str, observed: float) -> str:
    """How much the observed error itself moves from seed to seed: a miss below that is noise."""
    noise = rep.spread.get(ERR, dataset)
    if noise is None or not observed > 0:
        return ""
    sd, seeds = float(noise["sd"]), int(rep.seeds.get(run_id, 1))
    mean = f", so the observed {seeds}-seed mean within {_pct(sd / math.sqrt(seeds) / observed)}" if seeds > 1 else ""
    return f"; one seed's error moves by SD {sd:.3g} ({_pct(sd / observed)} of the observed){mean}"


def _verdict_sentences(verdicts: Classification) -> list[str]:
    designed = [v for v in verdicts if v.intended is not None]
    if not designed:
        return []
    hits = [v for v in designed if v.hit]
    text = (f"Designed tasks: {len(hits)} of {len(designed)} land in their intended class with confidence at least "
            f"{MIN_INTENDED_CONFIDENCE:g}")  # fmt: skip
    text += f" ({', '.join(v.task for v in hits)})." if hits else "."
    lines = [text]
    for v in designed:
        if not v.hit:
            lines.append(f"{v.task} is meant to be {v.intended} but is judged {v.cls} at confidence "
                         f"{v.confidence:.2f} (noise: {v.noise_label()}).")  # fmt: skip
    return lines


def _task_chain_sentences(chains: pd.DataFrame) -> list[str]:
    lines = []
    for row in chains.itertuples():
        if row.observed == 0:
            lines.append(f"{row.task} ({row.dataset}), {row.target}: error 0 observed, predicted {row.predicted:.3g}; "
                         "a relative error is undefined.")  # fmt: skip
            continue
        lines.append(f"{row.task} ({row.dataset}), {row.target}: its own Err(L) chained through the predicted loss "
                     f"gives {row.predicted:.3g} against {row.observed:.3g} observed ({_pct(abs(row.rel_error))} "
                     f"off; at the observed loss {_pct(abs(row.at_observed_rel_error))}).")  # fmt: skip
    return lines
