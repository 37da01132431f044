"""Figures: loss vs compute with the fitted law, error vs loss with Err(L), one panel per task curve; for the
ladder: loss against step per rung (iso-step), the law's and the frontier's relative residuals.

Colour encodes the token multiplier; fit runs are filled circles, unused runs faint circles,
held-out runs open stars, and their predictions crosses joined to the observation by a dashed line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.colors import LogNorm, Normalize  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from analysis.diagnostics import constraint_warnings  # noqa: E402
from analysis.errors import AnalysisError  # noqa: E402
from analysis.extrapolate import FIT, HELDOUT, UNUSED, Extrapolation, along_compute, law_multiplier  # noqa: E402
from analysis.fitting import Fit  # noqa: E402
from analysis.frontier import Frontier  # noqa: E402
from analysis.select import OWN, TOTAL  # noqa: E402
from analysis.verdicts import Classification  # noqa: E402

CMAP = plt.get_cmap("viridis")
DPI = 150  # every figure: readable when the browser scales it down, sharp when it does not
FONT = 9  # the smallest text in a figure, in points
STYLE: dict[Any, Any] = {
    "font.size": 10,
    "axes.titlesize": 10,
    "axes.labelsize": 10,
    "xtick.labelsize": FONT,
    "ytick.labelsize": FONT,
    "legend.fontsize": FONT,
}
BAND_ALPHA = 0.2
LEGEND = [
    Line2D([], [], color="grey", marker="o", linestyle="", label="fit run"),
    Line2D([], [], color="grey", marker="o", linestyle="", alpha=0.3, label="unused run"),
    Line2D([], [], color="grey", marker="*", markersize=12, fillstyle="none", linestyle="", label="held out"),
    Line2D([], [], color="grey", marker="x", linestyle="--", label="prediction"),
]


def plot_loss_vs_compute(result: Extrapolation, path: Path) -> Path:
    """One panel per training dataset: final loss against C = 6ND on log-log axes, the law's curve per
    multiplier with its 95 % bootstrap band where the fit was bootstrapped. A fit that breaks its law's
    constraints is drawn dashed and says so in its title; a failed fit has no curve and says why."""
    with plt.rc_context(STYLE):
        norm = _multiplier_norm(result.runs)
        fig, axes = _panels(result, norm)
        for ax, (dataset, runs) in zip(axes, result.runs.groupby("dataset", sort=True), strict=False):
            _draw_loss_vs_compute(ax, result, str(dataset), runs, norm)
        return _save(fig, path)


def _draw_loss_vs_compute(ax: plt.Axes, result: Extrapolation, dataset: str, runs: pd.DataFrame, norm) -> None:
    fits = result.fits[dataset]
    fit = fits.loss
    if fit.fitted:
        style = "--" if _broken(fit) else "-"
        flops = np.geomspace(runs["flops"].min() / 2, runs["flops"].max() * 2, 100)
        for multiplier in sorted(runs["multiplier"].unique()):
            inputs = along_compute(result.law, flops, law_multiplier(runs, multiplier))
            colour = CMAP(norm(multiplier))
            if fits.bootstrap is not None and fits.bootstrap.n_ok >= 2:
                low, high = fits.bootstrap.interval(fits.bootstrap.predict(inputs))
                ax.fill_between(flops, low, high, color=colour, alpha=BAND_ALPHA, linewidth=0)
            ax.plot(flops, fit.predict(inputs), color=colour, linewidth=1, linestyle=style)
    _draw_runs(ax, runs, "flops", "observed", norm)
    _draw_predictions(ax, runs, "flops", "predicted", "flops", "observed", norm)
    ax.set(xscale="log", yscale="log", xlabel=compute_label(result), ylabel=f"final loss ({result.x})")
    _log_ticks(ax)
    ax.set_title(_title(dataset, fit))


def compute_label(result: Extrapolation) -> str:
    """The compute axis' label, with how N was counted where it is not every parameter."""
    return "compute C = 6ND (FLOPs)" if result.params == TOTAL else "compute C = 6ND, N without embeddings (FLOPs)"


def _log_ticks(ax: plt.Axes) -> None:
    """Plain numbers on a log loss axis that spans less than a decade (where matplotlib would show none)."""
    from matplotlib.ticker import LogLocator, ScalarFormatter

    ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 1.5, 2.0, 3.0, 5.0, 7.0)))
    ax.yaxis.set_minor_locator(LogLocator(subs=[1.0 + k / 2 for k in range(18)]))
    formatter = ScalarFormatter()
    formatter.set_scientific(False)
    ax.yaxis.set_major_formatter(formatter)
    ax.yaxis.set_minor_formatter(plt.NullFormatter())


def plot_error_vs_loss(result: Extrapolation, path: Path) -> Path:
    """One panel per training dataset: downstream error against loss (log), the Err(L) fit (dashed when it
    breaks its constraints), chained predictions."""
    if result.target is None:
        raise AnalysisError("no task rows: there is no downstream error to plot")
    with plt.rc_context(STYLE):
        norm = _multiplier_norm(result.runs)
        fig, axes = _panels(result, norm)
        for ax, (dataset, runs) in zip(axes, result.runs.groupby("dataset", sort=True), strict=False):
            fit = result.fits[dataset].error
            assert fit is not None  # result.target is set: every dataset has a loss-to-error fit
            if fit.fitted:
                losses = pd.concat([runs["observed"], runs["predicted"]]).dropna()
                grid = np.geomspace(losses.min(), losses.max(), 100)
                ax.plot(grid, fit.predict(grid), color="black", linewidth=1, linestyle="--" if _broken(fit) else "-")
            _draw_runs(ax, runs, "observed", "observed_error", norm)
            _draw_predictions(ax, runs, "predicted", "predicted_error", "observed", "observed_error", norm)
            ax.set(xscale="log", xlabel=f"final loss ({result.x})", ylabel=f"error: {result.target}")
            ax.set_title(_title(dataset, fit))
        return _save(fig, path)


def _multiplier_norm(runs: pd.DataFrame) -> Normalize:
    low, high = runs["multiplier"].min(), runs["multiplier"].max()
    return LogNorm(low, high) if 0 < low < high else Normalize(low - 1, high + 1)


def _panels(result: Extrapolation, norm: Normalize) -> tuple[plt.Figure, list[plt.Axes]]:
    n = len(result.fits)
    cols = min(n, 3)
    rows = -(-n // cols)
    # fixed margins: constrained layout measured every curve and took 70 % of the drawing time
    width, height = 4.5 * cols + 1.5, 4 * rows
    fig, axes = plt.subplots(rows, cols, figsize=(width, height), squeeze=False)
    bottom, top = 0.55 / height, 1 - 0.35 / height  # margins in inches, whatever the size
    fig.subplots_adjust(left=0.75 / width, right=1 - 1.35 / width, bottom=bottom, top=top, wspace=0.3, hspace=0.3)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    colour_bar = fig.add_axes((1 - 1.1 / width, bottom, 0.15 / width, top - bottom))
    fig.colorbar(plt.cm.ScalarMappable(norm, CMAP), cax=colour_bar, label="token multiplier M = D/N")
    axes.flat[0].legend(handles=LEGEND, fontsize=FONT)
    return fig, list(axes.flat)


def _draw_runs(ax: plt.Axes, runs: pd.DataFrame, x: str, y: str, norm: Normalize) -> None:
    colour = CMAP(norm(runs["multiplier"].to_numpy()))
    styles: dict[str, dict[str, Any]] = {FIT: dict(marker="o"), UNUSED: dict(marker="o", alpha=0.3)}
    for role, style in styles.items():
        mine = (runs["role"] == role).to_numpy()
        ax.scatter(runs.loc[mine, x], runs.loc[mine, y], c=colour[mine], s=22, **style)
    held = (runs["role"] == HELDOUT).to_numpy()
    ax.scatter(runs.loc[held, x], runs.loc[held, y], marker="*", s=160, facecolors="none", edgecolors=colour[held])


def _draw_predictions(
    ax: plt.Axes, runs: pd.DataFrame, x: str, y: str, x_observed: str, y_observed: str, norm: Normalize
) -> None:
    held = runs[(runs["role"] == HELDOUT) & runs[y].notna()] if y in runs else runs.iloc[:0]
    for row in held.itertuples():
        colour = CMAP(norm(row.multiplier))
        x0, y0, x1, y1 = (getattr(row, c) for c in (x_observed, y_observed, x, y))
        ax.plot([x0, x1], [y0, y1], color=colour, linestyle="--", linewidth=0.8)
        ax.scatter([x1], [y1], color=colour, marker="x", s=50)


def _broken(fit: Fit) -> bool:
    """A fitted law whose parameters break its physical constraints (status unphysical, or by its signs)."""
    return not fit.ok or bool(constraint_warnings(fit))


def _title(dataset: str, fit: Fit) -> str:
    if not fit.fitted:
        return f"{dataset}: {fit.law.name} fit failed ({fit.status})"
    if _broken(fit):
        return f"{dataset}: fit breaks its constraints (dashed)"
    return dataset


def _save(fig: plt.Figure, path: Path, dpi: int = DPI) -> Path:
    """Write the figure with its margins fitted to its text (bbox_inches="tight": no clipped labels)."""
    fig.savefig(path, dpi=dpi, bbox_inches="tight", pad_inches=0.1)
    plt.close(fig)
    return path


CORPUS_COLOURS = plt.get_cmap("tab10")


def plot_task_panels(verdicts: Classification, path: Path, x_label: str, columns: int = 6) -> Path:
    """One small panel per task: runs coloured by training corpus, each corpus's fit of the
    verdict's family with its 95 % bootstrap band, the class, confidence and two key statistics."""
    n = len(verdicts)
    rows = -(-n // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(2.6 * columns, 2.2 * rows), squeeze=False)
    fig.subplots_adjust(left=0.04, right=0.99, bottom=0.04, top=1 - 0.35 / rows, hspace=0.75, wspace=0.3)
    corpora = sorted({c for v in verdicts if "runs" in v.curve for c in v.curve["runs"]["dataset"].dropna()})
    colour = {c: CORPUS_COLOURS(i % 10) for i, c in enumerate(corpora)}
    for ax, verdict in zip(axes.flat, verdicts, strict=False):
        runs = verdict.curve.get("runs")
        if runs is not None:
            ax.scatter(runs["loss"], runs["value"], s=6, c=[colour.get(c, "grey") for c in runs["dataset"]])
            low, high = np.nanmin(runs["value"]), np.nanmax(runs["value"])
            margin = 0.15 * (high - low) or 0.01
            ax.set_ylim(low - margin, high + margin)  # a wild bootstrap band must not hide the data
        for corpus, fit in verdict.curve.get("fits", {}).items():
            tint = colour.get(corpus, "black")
            if fit["low"] is not None:
                ax.fill_between(verdict.curve["x"], fit["low"], fit["high"], color=tint, alpha=0.2, linewidth=0)
            ax.plot(verdict.curve["x"], fit["fit"], color=tint, linewidth=1)
        ax.invert_xaxis()  # scale grows to the right
        ax.tick_params(labelsize=6, length=2, pad=1)
        ax.locator_params(nbins=3)  # few tick labels: text is most of the drawing time
        title = f"{verdict.task}\n{verdict.cls} ({verdict.confidence:.0%})"
        ax.set_title(title, fontsize=7, color=CLASS_COLOURS.get(verdict.cls, "black"))
        ax.text(0.02, 0.97, _panel_evidence(verdict.evidence), transform=ax.transAxes, fontsize=5.5,
                va="top", family="monospace")  # fmt: skip
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    handles = [Line2D([], [], color=colour[c], marker="o", linestyle="", label=c) for c in corpora]
    if handles:
        fig.legend(handles=handles, loc="upper right", fontsize=7, ncol=len(handles))
    fig.text(0.01, 1 - 0.1 / rows, f"accuracy against {x_label} (x reversed: lower loss to the right)", fontsize=8)
    return _save(fig, path, dpi=80)


def corpus_colours(verdicts: Classification) -> dict[str, Any]:
    """One colour per training corpus, the same on every task's figure."""
    corpora = sorted({c for v in verdicts if "runs" in v.curve for c in v.curve["runs"]["dataset"].dropna()})
    return {c: CORPUS_COLOURS(i % 10) for i, c in enumerate(corpora)}


def plot_task(verdict, path: Path, x_label: str, colours: dict[str, Any]) -> Path:
    """One task, readable on its own page: its runs coloured by training corpus, each corpus's fit of the
    verdict's family with its 95 % bootstrap band, the class and confidence in the title."""
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        runs = verdict.curve.get("runs")
        if runs is not None:
            ax.scatter(runs["loss"], runs["value"], s=22, c=[colours.get(c, "grey") for c in runs["dataset"]],
                       zorder=3)  # fmt: skip
            low, high = np.nanmin(runs["value"]), np.nanmax(runs["value"])
            margin = 0.15 * (high - low) or 0.01
            ax.set_ylim(low - margin, high + margin)  # a wild bootstrap band must not hide the data
        for corpus, fit in verdict.curve.get("fits", {}).items():
            tint = colours.get(corpus, "black")
            if fit["low"] is not None:
                ax.fill_between(verdict.curve["x"], fit["low"], fit["high"], color=tint, alpha=BAND_ALPHA,
                                linewidth=0)  # fmt: skip
            ax.plot(verdict.curve["x"], fit["fit"], color=tint, linewidth=1.2)
        ax.invert_xaxis()  # scale grows to the right
        ax.set(xlabel=f"final loss ({x_label}), reversed: lower to the right", ylabel="accuracy")
        ax.set_title(f"{verdict.task}: {verdict.cls} ({verdict.confidence:.0%})",
                     color=CLASS_COLOURS.get(verdict.cls, "black"))  # fmt: skip
        ax.text(0.02, 0.97, _panel_evidence(verdict.evidence), transform=ax.transAxes, fontsize=FONT, va="top",
                family="monospace")  # fmt: skip
        handles = [Line2D([], [], color=colours[c], marker="o", linestyle="", label=c) for c in colours]
        if handles:
            ax.legend(handles=handles, loc="lower right")
        return _save(fig, path)


CLASS_COLOURS = {
    "predictable": "tab:green",
    "noisy": "tab:olive",
    "breakthrough": "tab:purple",
    "trendless": "tab:gray",
    "inverse": "tab:red",
    "nonmonotonic": "tab:orange",
}


def _panel_evidence(evidence: dict) -> str:
    def value(name: str) -> str:
        item = evidence.get(name)
        return "-" if not item or item["value"] is None else f"{item['value']:.2f}"

    return f"rho {value('rho')}  R2 {value('r2')}\nchange {value('change')}"


STYLES = ["-", "--", ":", "-."] * 8  # one per run of a size


def plot_iso_step(table: pd.DataFrame, path: Path, x: str = OWN, multiplier: float = 20.0) -> Path:
    """One panel per training dataset: validation loss on `x` against optimizer step (log) for every run at
    token multiplier `multiplier`, coloured by size. If the curves overlap, the ladder measures optimisation
    (steps), not model size."""
    rows = table[(table["kind"] == "val_loss").fillna(False) & table["step"].notna()]
    rows = rows[np.isclose(rows["multiplier"].to_numpy(dtype=float, na_value=np.nan), multiplier)]
    rows = rows[(rows["name"] == (rows["dataset"] if x == OWN else x)).fillna(False)]
    if rows.empty:
        which = "their own dataset" if x == OWN else x
        raise AnalysisError(f"no val_loss rows with a step on {which} at M = {multiplier:g}: nothing to plot")
    datasets = sorted(rows["dataset"].dropna().unique())
    fig, axes = plt.subplots(1, len(datasets), figsize=(5.5 * len(datasets), 4), squeeze=False)
    sizes = rows.groupby("size")["params"].median().sort_values(kind="stable")
    colour = {s: CMAP(i / max(len(sizes) - 1, 1)) for i, s in enumerate(sizes.index)}
    for ax, dataset in zip(axes.flat, datasets, strict=True):
        mine = rows[rows["dataset"] == dataset]
        for size in sizes.index:  # a size's runs (LRs, seeds) in its colour, smallest size first
            runs = mine[mine["size"] == size]
            for style, (_, run) in zip(STYLES, runs.groupby("run_id", sort=True), strict=False):
                run, lr = run.sort_values("step"), run["lr"].iloc[0]
                label = f"{size}" + (f" lr {lr:.3g}" if pd.notna(lr) else "") + f" seed {run['seed'].iloc[0]}"
                ax.plot(run["step"], run["value"], color=colour[size], marker=".", linestyle=style, label=label)
        ax.set(xscale="log", xlabel="optimizer step", ylabel=f"validation loss ({x})")
        ax.set_title(f"{dataset}, M = {multiplier:g}: overlapping curves measure steps, not N", fontsize=9)
        ax.legend(fontsize=6)
    fig.tight_layout()
    return _save(fig, path)


def _residual_panels(n: int) -> tuple[plt.Figure, list[plt.Axes], list[plt.Axes]]:
    """A column per dataset: the fit above, its relative residuals (shared x) below."""
    fig, axes = plt.subplots(2, n, figsize=(5 * n + 1.5, 6), squeeze=False, sharex="col",
                             gridspec_kw={"height_ratios": [3, 1.3]})  # fmt: skip
    fig.subplots_adjust(left=0.8 / (5 * n + 1.5), wspace=0.3, hspace=0.08)
    for ax in axes[1]:
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set_ylabel("obs / pred - 1")
    return fig, list(axes[0]), list(axes[1])


def plot_residuals(result: Extrapolation, path: Path) -> Path:
    """Above: loss against compute with the fitted law per multiplier (plot_loss_vs_compute's panel); below:
    each run's relative residual, observed / predicted - 1, fit runs filled, held-out runs open stars."""
    if not any(fits.loss.fitted for fits in result.fits.values()):
        reasons = "; ".join(f"{d}: {fits.loss.reason}" for d, fits in result.fits.items())
        raise AnalysisError(f"no {result.law.name} fit to show residuals of ({reasons})")
    norm = _multiplier_norm(result.runs)
    fig, top, bottom = _residual_panels(len(result.fits))
    for ax, below, (dataset, runs) in zip(top, bottom, result.runs.groupby("dataset", sort=True), strict=True):
        _draw_loss_vs_compute(ax, result, str(dataset), runs, norm)
        ax.set_xlabel("")
        runs = runs.assign(residual=runs["observed"] / runs["predicted"] - 1)
        _draw_runs(below, runs, "flops", "residual", norm)
        below.set(xscale="log", xlabel=compute_label(result))
    top[0].legend(handles=LEGEND, fontsize=7)
    fig.colorbar(plt.cm.ScalarMappable(norm, CMAP), ax=[*top, *bottom], label="token multiplier M = D/N")
    return _save(fig, path)


def plot_frontier(front: Frontier, path: Path) -> Path:
    """Above: the final loss of each size at M (its best LR, seed mean) against compute with the fitted
    L(C) = E + A / C^alpha and E dotted, and the text's entropy dash-dotted where known; below: the relative
    residuals."""
    if front.runs["predicted"].isna().all():
        reasons = "; ".join(f"{d}: {fit.reason}" for d, fit in front.fits.items())
        raise AnalysisError(f"no frontier fit to show ({reasons})")
    fig, top, bottom = _residual_panels(len(front.fits))
    for ax, below, (dataset, fit) in zip(top, bottom, front.fits.items(), strict=True):
        runs = front.runs[front.runs["dataset"] == dataset]
        ax.scatter(runs["flops"], runs["observed"], color="black", s=22, zorder=3)
        for row in runs.itertuples():
            ax.annotate(str(row.size), (row.flops, row.observed), fontsize=7, xytext=(3, 3), textcoords="offset points")
        if fit.fitted:
            flops = np.geomspace(runs["flops"].min() / 2, runs["flops"].max() * 2, 100)
            ax.plot(flops, fit.predict(flops), color="tab:blue", linewidth=1, linestyle="--" if _broken(fit) else "-")
            ax.axhline(fit.params["E"], color="tab:blue", linestyle=":", linewidth=0.8)
            values = ", ".join(f"{k} {v:.3g}" for k, v in fit.params.items())
            title = f"{dataset}, M = {front.multiplier:g}: L = E + A C^-alpha, {values}"
        else:
            title = f"{dataset}: frontier fit failed ({fit.status})"
        if dataset in front.floors:
            ax.axhline(front.floors[dataset], color="tab:red", linestyle="-.", linewidth=0.8)
            ax.annotate("text entropy", (runs["flops"].min(), front.floors[dataset]), fontsize=7, color="tab:red",
                        xytext=(0, 3), textcoords="offset points")  # fmt: skip
        ax.set(xscale="log", ylabel=f"final loss ({front.x})")
        ax.set_title(title, fontsize=9)
        below.scatter(runs["flops"], runs["residual"], color="black", s=22)
        below.set(xscale="log", xlabel="compute C = 6ND (FLOPs)")
    fig.tight_layout()
    return _save(fig, path)
