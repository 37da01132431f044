"""A self-contained HTML report (index.html plus PNGs beside it), written all at once or not at all."""

from __future__ import annotations

import html
import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from analysis.errors import AnalysisError
from analysis.extrapolate import ERROR_LAW, Extrapolation, Split, extrapolate
from analysis.fitting import Fit
from analysis.plots import corpus_colours, plot_error_vs_loss, plot_loss_vs_compute, plot_task
from analysis.reproduce import records_frame
from analysis.seeds import SeedSpread
from analysis.select import OWN
from analysis.translation import MIN_SPEARMAN, NOISE_Z, TranslationAnalysis, benefit_trends
from analysis.translation_plots import plot_translation
from analysis.verdicts import MIN_INTENDED_CONFIDENCE, Classification, Verdict


def write_report(
    table: pd.DataFrame,
    out_dir: str | Path,
    x: str = OWN,
    task: str | Sequence[str] | None = None,
    *,
    law: str = "overtrain",
    metric: str = "acc",
    split: Split | None = None,
    n_bootstrap: int = 0,
    source: str = "",
) -> Path:
    """Fit, predict and write out_dir/index.html with its figures; returns the index path."""
    return save_report(extrapolate(table, law, x, task, metric, split, n_bootstrap), out_dir, source, table=table)


@dataclass(frozen=True)
class Extras:
    """Optional report sections: the reproduction records (analysis.reproduce), the task verdicts
    (analysis.classify), the context-sensitivity table (analysis.context), the translation laws
    (analysis.translation)."""

    reproduction: list[dict] | None = None
    verdicts: Classification | None = None
    context: pd.DataFrame | None = None
    seeds: SeedSpread | None = None  # shown when some configuration was run with repeated seeds
    translation: TranslationAnalysis | None = None
    replication: pd.DataFrame | None = None  # analysis.replicate's table of held-out records (own runs)
    story: tuple[str, ...] = ()  # what the numbers show, in words (analysis.narrative)


def save_report(
    result: Extrapolation | None,
    out_dir: str | Path,
    source: str = "",
    extras: Extras | None = None,
    table: pd.DataFrame | None = None,
) -> Path:
    """Write the report of `result` (and `extras`) to out_dir; returns out_dir/index.html. Without a
    result (a table of translation rows only) the report has the extras' sections alone. With the task
    verdicts, each task gets its own page, tasks/<task>.html, which the index links. `table`: the results
    table, for the header (its sweeps).

    Everything is written into a temporary sibling directory that then replaces out_dir, so a
    failure leaves either the previous report or nothing. An existing out_dir is only replaced
    if it is empty or holds a report (an index.html).
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and (
        not out_dir.is_dir() or (any(out_dir.iterdir()) and not (out_dir / "index.html").exists())
    ):
        raise AnalysisError(f"{out_dir}: exists and is not a report directory; refusing to replace it")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    staging.chmod(0o755)  # mkdtemp makes it private
    try:
        extras = extras or Extras()
        header = render_header(source, table)
        if result is not None:
            figures = [plot_loss_vs_compute(result, staging / "loss_vs_compute.png")]
            if result.target is not None:
                figures.append(plot_error_vs_loss(result, staging / "error_vs_loss.png"))
            html_text = render_html(result, [f.name for f in figures], source)
        else:
            html_text = _page(f"<h1>Translation finetuning</h1>\n<p>Results: {html.escape(source or 'table')}. No "
                              "validation-loss rows: the translation analysis alone.</p>")  # fmt: skip
        html_text = html_text.replace("</h1>", "</h1>\n" + header, 1)
        if extras.verdicts:
            write_task_pages(extras.verdicts, staging)
        sections = render_extras(extras)
        if extras.translation is not None:
            names = [path.name for path in plot_translation(extras.translation, staging)]
            sections += render_translation(extras.translation, names)
        (staging / "index.html").write_text(html_text.replace(END, sections + END))
        _replace(out_dir, staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out_dir / "index.html"


VERSIONED = ("testbed", "numpy", "scipy", "pandas", "matplotlib")


def render_header(source: str, table: pd.DataFrame | None) -> str:
    """What was run: the results file, the sweeps its rows name, the git commit where known, the versions."""
    items = [f"<li>Results: <code>{html.escape(source or 'table')}</code></li>"]
    if table is not None and "sweep" in table:
        sweeps = sorted(str(s) for s in table["sweep"].dropna().unique())
        items.append(f"<li>Sweep{'s' if len(sweeps) != 1 else ''}: {html.escape(', '.join(sweeps) or 'not named')}"
                     "</li>")  # fmt: skip
    commit = git_commit(source)
    if commit:
        items.append(f"<li>Git commit: <code>{html.escape(commit)}</code></li>")
    versions = ", ".join(f"{name} {version}" for name, version in package_versions().items())
    items.append(f"<li>Versions: {html.escape(versions)}</li>")
    return '<ul class="header">\n' + "\n".join(items) + "\n</ul>"


def package_versions() -> dict[str, str]:
    """The installed versions of the packages a report depends on ("?" when unknown). testbed's is read
    without importing it (analysis never imports testbed)."""
    out = {}
    for name in VERSIONED:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = _source_version(name)
    return out


def _source_version(name: str) -> str:
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        return "?"
    found = re.search(r'__version__\s*=\s*"([^"]+)"', Path(spec.origin).read_text())
    return found.group(1) if found else "?"


def git_commit(source: str = "") -> str | None:
    """The commit the report comes from: $TESTBED_GIT_COMMIT if set, else the checkout that holds the results
    file (with "(modified)" when it has uncommitted changes), else the checkout of the analysis code; None
    outside git."""
    if os.environ.get("TESTBED_GIT_COMMIT"):
        return os.environ["TESTBED_GIT_COMMIT"]
    places = [Path(source).resolve().parent] if source else []
    places.append(Path(__file__).resolve().parent)
    for place, what in zip(places, ["results", "analysis code"][-len(places) :], strict=True):
        if not place.is_dir():
            continue
        try:
            head = subprocess.run(["git", "-C", str(place), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                                  text=True, timeout=10, check=True).stdout.strip()  # fmt: skip
            dirty = subprocess.run(["git", "-C", str(place), "status", "--porcelain", "--untracked-files=no"],
                                   capture_output=True, text=True, timeout=10).stdout.strip()  # fmt: skip
        except (OSError, subprocess.SubprocessError):
            continue
        if head:
            return f"{head}{' (modified)' if dirty else ''}, the checkout of the {what}"
    return None


def task_page_name(task: str) -> str:
    """A file name for a task's page and figure: the task name with unsafe characters replaced."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", task).strip(".") or "task"


def task_page_names(verdicts: Iterable[Verdict]) -> list[str]:
    """Each task's page name (without .html), unique even when task names differ only in unsafe characters."""
    seen: dict[str, int] = {}
    out = []
    for verdict in verdicts:
        name = task_page_name(verdict.task)
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name}-{seen[name]}")
    return out


def write_task_pages(verdicts: Classification, out_dir: Path) -> list[Path]:
    """tasks/<task>.html per task: its figure, its verdict and the evidence behind it; returns the pages."""
    folder = out_dir / "tasks"
    folder.mkdir()
    colours = corpus_colours(verdicts)
    pages = []
    for verdict, name in zip(verdicts, task_page_names(verdicts), strict=True):
        figure = plot_task(verdict, folder / f"{name}.png", verdicts.x, colours)
        evidence = verdict_table([verdict]).T.reset_index()
        evidence.columns = ["statistic", "value (95 % interval)"]
        body = "\n".join([
            f"<h1>Task {html.escape(verdict.task)}: {html.escape(verdict.cls)}</h1>",
            '<p><a href="../index.html">back to the report</a></p>',
            _figure(figure.name, f"accuracy of {verdict.task} against {verdicts.x}",
                    f"Each point is one run's final accuracy on {html.escape(verdict.task)} against its final "
                    f"validation loss on {html.escape(verdicts.x)} (x reversed: larger models and more data to the "
                    "right), coloured by training corpus; the lines are each corpus's fit of the verdict's law, "
                    f"the bands their 95 % bootstrap intervals. Verdict: {html.escape(verdict.cls)}, in "
                    f"{verdict.confidence:.0%} of the bootstrap resamples."),
            "<h2>Evidence</h2>",
            "<p>The statistics the verdict rests on, each with its 95 % bootstrap interval; the rules and "
            "thresholds: docs/analysis.md.</p>",
            _html_table(evidence),
        ])  # fmt: skip
        page = folder / f"{name}.html"
        page.write_text(_page(body, f"testbed: {verdict.task}"))
        pages.append(page)
    return pages


def _figure(src: str, alt: str, caption: str) -> str:
    """An image with a short text under it that says what it shows."""
    return (f'<figure><img src="{html.escape(src)}" alt="{html.escape(alt)}">\n'
            f"<figcaption>{caption}</figcaption></figure>")  # fmt: skip


def _replace(target: Path, staging: Path) -> None:
    old = staging.with_name(staging.name + ".old")
    if target.exists():
        target.rename(old)
    staging.rename(target)
    shutil.rmtree(old, ignore_errors=True)


def render_html(result: Extrapolation, figures: list[str], source: str = "") -> str:
    law = result.law
    # the laws fitted, one per dataset: with --loss-floor entropy each loss law holds its own text's E, with
    # --error-asymptote chance each error law its own epsilon
    fitted = [f.loss.law for f in result.fits.values()] or [law]
    loss_formula = "</code>; <code>".join(map(html.escape, dict.fromkeys(f.formula for f in fitted)))
    # the compute form is the free law's: said only where every dataset's loss law is the free one
    free = all(f.formula == law.formula for f in fitted) and law.derived
    equivalent = f", equivalently <code>{html.escape(law.derived_formula)}</code>" if free else ""
    error_laws = dict.fromkeys(f.error.law.formula for f in result.fits.values() if f.error is not None)
    error_formula = "</code>; <code>".join(map(html.escape, error_laws or [ERROR_LAW.formula]))
    parts = [
        f"<h1>Scaling-law extrapolation: {html.escape(law.name)}</h1>",
        f"<p>Results: {html.escape(source or 'table')}. Loss axis: final validation loss on "
        f"<b>{html.escape(result.x)}</b>. Downstream: {html.escape(result.target or 'no task rows')}.</p>",
        f"<p>Loss law: <code>{loss_formula}</code>{equivalent}. Downstream law: "
        f"<code>{error_formula}</code>, chained as Err(L_pred).</p>",
        *(_figure(name, name, FIGURE_CAPTIONS.get(name, "")) for name in figures),
        "<h2>Fitted loss laws</h2>",
        _html_table(fit_table({name: fits.loss for name, fits in result.fits.items()})),
    ]
    if result.target is not None:
        parts += [
            "<h2>Fitted loss-to-error laws</h2>",
            # every dataset has one when there is a target
            _html_table(fit_table({name: fits.error for name, fits in result.fits.items() if fits.error})),
        ]
    if result.tasks is not None:
        parts.append(f"<p>Downstream tasks: {html.escape(result.tasks.summary())}.</p>")
    parts += [
        "<h2>Held-out runs</h2>",
        _html_table(result.heldout().drop(columns=["arch", "seed", "tokens", "role"])),
        *(
            ["<h2>Warnings</h2>", "<ul>", *(f"<li>{html.escape(w)}</li>" for w in result.warnings), "</ul>"]
            if result.warnings
            else []
        ),
        "<h2>All runs</h2>",
        _html_table(result.runs.drop(columns=["arch", "seed", "tokens"])),
    ]
    return _page("\n".join(parts))


FIGURE_CAPTIONS = {
    "loss_vs_compute.png": "Final validation loss against training compute C = 6ND, both axes logarithmic, one "
    "panel per training corpus. Colour: the token multiplier M = D/N. Filled circles: the runs the law was fitted "
    "on; faint circles: unused runs; open stars: held-out runs, with the law's prediction as a cross joined by a "
    "dashed line. The curves are the fitted law at each multiplier, with its 95 % bootstrap band where the fit "
    "was bootstrapped (--bootstrap B, or --protocol replicate). A dashed curve breaks its law's physical "
    "constraints; a panel whose fit failed has no curve and says why in its title.",
    "error_vs_loss.png": "Downstream error against final validation loss (log axis), one panel per training "
    "corpus: the observed runs, the fitted Err(L) law (dashed when it breaks its constraints) and, for held-out "
    "runs, the error chained from the predicted loss (crosses) beside the observed one (stars).",
}


def _page(body: str, title: str = "testbed analysis") -> str:
    """The HTML page around `body`, ending with END."""
    return (
        f"<!doctype html>\n<html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        "<style>body{font-family:sans-serif;max-width:1400px;margin:auto;padding:0 8px}"
        "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:2px 6px}"
        "figure{margin:1em 0}figcaption{font-size:14px;color:#333;max-width:60em}"
        "ul.task-links{columns:18em}"
        f"img{{max-width:100%;height:auto}}</style></head><body>\n{body}\n{END}"
    )


END = "</body></html>\n"


def render_extras(extras: Extras) -> str:
    """The HTML sections of the reproduction, the task verdicts and the context table."""
    parts = []
    if extras.story:
        parts += ["<h2>What this shows</h2>", "<ul>", *(f"<li>{html.escape(line)}</li>" for line in extras.story),
                  "</ul>"]  # fmt: skip
    if extras.replication is not None:
        parts += [
            "<h2>The over-training protocol on these runs</h2>",
            "<p>Gadre et al.'s roles by size: the four smallest sizes at M = 20 and the smallest over-trained fit "
            "the loss law; Err(L) adds the fifth size at M = 20; every larger run is predicted. quantity loss: the "
            "final validation loss on the run's own data; err: mean error of the tasks that leave chance in the "
            "fit runs, chained as Err(L_pred). rel_error in percent; ci: 95 % bootstrap interval widened by the "
            "seed-to-seed SD; compute_ratio: the target's compute over the largest fit run's.</p>",
            _html_table(extras.replication),
        ]
    if extras.reproduction:
        parts += [
            "<h2>Reproduction of the published protocol</h2>",
            "<p>Held-out runs per training corpus: the over-trained 1.4B run and 6.9B at M = 20. "
            "quantity loss: C4 validation loss; err17 / err46: mean top-1 error over the 17-task subset / "
            "all 46 tasks, chained as Err(L_pred). rel_error in percent; ci: 95 % bootstrap interval.</p>",
            _html_table(records_frame(extras.reproduction)),
        ]
    if extras.verdicts:
        counts = extras.verdicts.counts()
        share = counts.get("predictable", 0) / len(extras.verdicts)
        hits, designed = extras.verdicts.designed()
        hit_text = (
            f" Designed tasks in their intended class with confidence >= {MIN_INTENDED_CONFIDENCE}: {hits} of "
            f"{designed}."
            if designed
            else ""
        )
        parts += [
            f"<h2>Task curves against {html.escape(extras.verdicts.x)}</h2>",
            f"<p>{len(extras.verdicts)} tasks: "
            + ", ".join(f"{name} {k}" for name, k in counts.items())
            + f". Predictable: {share:.0%}. Rules and thresholds: docs/analysis.md. Each task has its own page: "
            "its runs, each corpus's fit of the verdict's law with its 95 % bootstrap band, and the evidence; "
            f"confidence = share of bootstrap resamples with the same verdict.{hit_text}</p>",
            '<ul class="task-links">',
            *(
                f'<li><a href="tasks/{html.escape(name)}.html">{html.escape(v.task)}</a>: {html.escape(v.cls)} '
                f"({v.confidence:.0%})</li>"
                for v, name in zip(extras.verdicts, task_page_names(extras.verdicts), strict=True)
            ),
            "</ul>",
            _html_table(verdict_table(extras.verdicts)),
        ]
    if extras.seeds is not None and extras.seeds.measured:
        parts += [
            "<h2>Seed-to-seed spread</h2>",
            "<p>Standard deviation over seeds of the final loss and of each task's accuracy, pooled over the "
            "configurations run with more than one seed (dataset * : over all datasets); rel_sd = sd / mean; "
            "dof = sum of (seeds - 1). The task verdicts judge trendless and predictable against a task's seed "
            "SD (column noise).</p>",
            _html_table(extras.seeds.pooled),
        ]
    if extras.context is not None:
        first, second = extras.context.attrs.get("x", ("axis 1", "axis 2"))
        parts += [
            "<h2>Context sensitivity</h2>",
            f"<p>gap = accuracy of corpus_a minus corpus_b at equal validation loss (linear fits, middle "
            f"of the shared loss range) with the loss on <b>{html.escape(first)}</b> (_1) and on "
            f"<b>{html.escape(second)}</b> (_2); low/high: 95 % bootstrap interval. flip: both "
            "significant with opposite signs; inconclusive: opposite signs, not both significant.</p>",
            _html_table(extras.context),
        ]
    return "\n".join(parts) + "\n"


def render_translation(analysis: TranslationAnalysis, figures: Sequence[str]) -> str:
    """The translation section: the figures, each series' verdict with its reason, the held-out points and
    the pretraining benefit per finetuning size."""
    counts = ", ".join(f"{verdict} {k}" for verdict, k in analysis.counts().items())
    parts = [
        "<h2>Translation: Isik et al.'s laws against pretraining tokens</h2>",
        f"<p>Per series (arch, size, task, mixture, finetuning size): BLEU, chrF, ROUGE-L (and COMET) fitted with "
        "the log law f(D) = c (log(D/D0))^beta [Isik's (log(A D^alpha))^beta] and cross-entropy with "
        "L(D) = E + A / D^alpha (Huber on logs) "
        f"on all but the last {analysis.holdout} pretraining token counts{html.escape(analysis.fit_from_text())}, "
        "which the laws predict. Aligned: BLEU "
        f"rises (Spearman >= {MIN_SPEARMAN:g}) and the log law predicts the held-out points within "
        f"{analysis.tolerance:.0%}; misaligned: BLEU falls, drops between checkpoints or stays flat beyond "
        f"{NOISE_Z:g} combined SDs (the signature when cross-entropy improves meanwhile), rises unsteadily, or "
        f"the law misses; undetermined: the law could not be checked. {len(analysis.series)} series: "
        f"{counts}. Rules: docs/analysis.md.</p>",
        *(
            _figure(
                name,
                name,
                "The series' quantities against pretraining tokens with the laws fitted on the "
                "earlier checkpoints; the last points are held out and predicted.",
            )
            for name in figures
        ),  # fmt: skip
        "<h3>Verdicts</h3>",
        "<ul>",
        *(
            f"<li>{html.escape(analysis.series_label(s))}: <b>{s.verdict}</b>: {html.escape(s.reason)}</li>"
            for s in analysis.series
        ),
        "</ul>",
        "<h3>Held-out points</h3>",
        "<p>rel_error = |predicted - observed| / observed; spearman: of the quantity's whole series.</p>",
        _html_table(analysis.heldout()),
    ]
    if not analysis.benefit.empty:
        parts += [
            "<h3>Benefit of pretraining by finetuning size</h3>",
            "<p>The best checkpoint's BLEU gain over the no-pretraining baseline (± its SD; p: paired bootstrap, "
            "where the table has bleu_gain rows). Isik et al. find that a larger finetuning set shrinks it.</p>",
            "<ul>",
            *(f"<li>{html.escape(line)}</li>" for line in benefit_trends(analysis.benefit)),
            "</ul>",
            _html_table(analysis.benefit),
        ]
    return "\n".join(parts) + "\n"


def verdict_table(verdicts: Iterable[Verdict]) -> pd.DataFrame:
    """One row per task: class, confidence and the statistics behind it (value and 95 % interval)."""
    rows = []
    for verdict in verdicts:
        row = {"task": verdict.task, "class": verdict.cls, "intended": verdict.intended or "",
               "confidence": verdict.confidence}  # fmt: skip
        for name in ("rho", "change", "r2", "sigmoid_r2", "delta_bic", "rise", "fall", "tau"):
            item = verdict.evidence.get(name)
            if item:
                row[name] = _with_interval(item)
        row["votes"] = json.dumps(verdict.evidence.get("votes", {}))
        row["noise"] = verdict.noise_label()
        rows.append(row)
    return pd.DataFrame(rows)


def _with_interval(item: dict) -> str:
    value, (low, high) = item["value"], item["ci95"]
    if value is None:
        return ""
    return f"{value:.3g}" if low is None else f"{value:.3g} [{low:.3g}, {high:.3g}]"


def fit_table(fits: dict[str, Fit]) -> pd.DataFrame:
    """One row per dataset: status, points, residual and every parameter, derived ones included."""
    rows = []
    for dataset, fit in fits.items():
        row = {"dataset": dataset, "status": fit.status, "n": fit.n_points}
        if fit.fitted:  # an unphysical fit keeps its numbers, beside the reason
            row |= {"residual": fit.residual, **fit.params}
            row |= fit.law.derived(fit.params) if fit.law.derived else {}
        if not fit.ok:
            row["reason"] = fit.reason
        rows.append(row)
    return pd.DataFrame(rows)


def _html_table(frame: pd.DataFrame) -> str:
    return frame.to_html(index=False, float_format="{:.4g}".format, na_rep="")
