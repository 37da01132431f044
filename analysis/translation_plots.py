"""Figures of the translation analysis (analysis.translation): per (arch, size, task), BLEU (top row) and
cross-entropy (bottom row) against pretraining tokens, one column per finetuning size, one colour per
mixture (labelled with its alignment A). Fit points are dots with their SD, held-out points open stars,
the fitted law a line over the pretraining range (dotted when it ended on its box's edge), the
no-pretraining baseline a dashed horizontal line; the legend sits below the panels."""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.lines import Line2D
from matplotlib.ticker import NullFormatter

from analysis.plots import CORPUS_COLOURS, DPI, FONT, STYLE  # also selects the Agg backend
from analysis.translation import BLEU, CROSS_ENTROPY, Series, TranslationAnalysis, mixture_text
from analysis.translation_fits import EARLY, FIT, HELDOUT, QuantityFit

ROWS = {BLEU: "BLEU", CROSS_ENTROPY: "cross-entropy (nats / token)"}
LEGEND = [
    Line2D([], [], color="grey", marker="o", linestyle="", label="fit point (± SD)"),
    Line2D([], [], color="grey", marker="o", fillstyle="none", linestyle="", label="before --fit-from"),
    Line2D([], [], color="grey", marker="*", markersize=11, fillstyle="none", linestyle="", label="held out"),
    Line2D([], [], color="grey", linestyle="-", label="fitted law"),
    Line2D([], [], color="grey", linestyle="--", label="no pretraining"),
]


def plot_translation(analysis: TranslationAnalysis, out_dir: Path) -> list[Path]:
    """One figure per (arch, size, task), written to out_dir/translation_<arch>_<size>_<task>.png."""
    groups: dict[tuple, list[Series]] = {}
    for series in analysis.series:
        groups.setdefault((series.key["arch"], series.key["size"], series.key["task"]), []).append(series)
    return [_plot_group(key, members, out_dir) for key, members in sorted(groups.items(), key=lambda kv: str(kv[0]))]


def _plot_group(key: tuple, members: list[Series], out_dir: Path) -> Path:
    with plt.rc_context(STYLE):  # the report's sizes: 9 pt and up
        return _draw_group(key, members, out_dir)


def _draw_group(key: tuple, members: list[Series], out_dir: Path) -> Path:
    sizes = sorted({s.key["finetune_tokens"] for s in members})
    mixtures = sorted({mixture_text(s.key) for s in members})  # with the setting that splits one
    colour = {m: CORPUS_COLOURS(i % 10) for i, m in enumerate(mixtures)}
    fig, axes = plt.subplots(len(ROWS), len(sizes), figsize=(4.5 * len(sizes) + 1, 7), squeeze=False, sharex="col")
    pretrained = set()  # columns with a pretrained point: only those get a log x axis (the baseline is at 0)
    for series in members:
        column = sizes.index(series.key["finetune_tokens"])
        for row, quantity in enumerate(ROWS):
            if quantity in series.curves:
                _draw_curve(axes[row, column], series.curves[quantity], colour[mixture_text(series.key)])
                pretrained |= {column} if not series.curves[quantity].pretrained.empty else set()
    for column, size in enumerate(sizes):
        axes[0, column].set_title(f"{size:,.0f} finetuning tokens", fontsize=FONT + 1)
        axes[-1, column].set_xlabel("pretraining tokens D_p")
        for row, name in enumerate(ROWS.values()):
            axes[row, column].set(
                xscale="log" if column in pretrained else "linear", ylabel=name if column == 0 else ""
            )
            axes[row, column].xaxis.set_minor_formatter(NullFormatter())  # decade labels only: 2x10^5 ... collide
    lines = [Line2D([], [], color=colour[m], label=_mixture_label(m, members)) for m in mixtures]
    fig.suptitle(f"{key[0]} {key[1]} {key[2]}: Isik et al.'s laws against pretraining tokens", fontsize=FONT + 2)
    fig.tight_layout()
    # below the panels, not in one: the mixtures' labels carry their verdicts and would cover points
    fig.legend(handles=[*lines, *LEGEND], fontsize=FONT, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=2)
    path = out_dir / _file_name(key)
    fig.savefig(path, dpi=DPI, bbox_inches="tight", pad_inches=0.1)
    plt.close(fig)
    return path


def _draw_curve(ax: plt.Axes, curve: QuantityFit, colour) -> None:
    points, pretrained = curve.points, curve.pretrained
    fitted = points[points["role"] == FIT]
    ax.errorbar(fitted["pretrain_tokens"], fitted["mean"], yerr=fitted["uncertainty"].fillna(0), color=colour,
                marker="o", markersize=4, linestyle="", capsize=2)  # fmt: skip
    early = points[points["role"] == EARLY]  # before --fit-from: shown, not fitted
    ax.scatter(early["pretrain_tokens"], early["mean"], marker="o", s=16, facecolors="none", edgecolors=colour)
    held = points[points["role"] == HELDOUT]
    ax.scatter(held["pretrain_tokens"], held["mean"], marker="*", s=110, facecolors="none", edgecolors=colour)
    drawn = pretrained[pretrained["role"] != EARLY]  # the law over the range it was fitted and judged on
    if curve.fit.ok and not drawn.empty:
        grid = np.geomspace(drawn["pretrain_tokens"].min(), drawn["pretrain_tokens"].max(), 100)
        ax.plot(grid, curve.fit.predict(grid), color=colour, linewidth=1, linestyle="-" if curve.holds else ":")
    baseline = curve.baseline
    if baseline is not None:
        ax.axhline(baseline["mean"], color=colour, linestyle="--", linewidth=0.8)


def _mixture_label(mixture: str, members: list[Series]) -> str:
    """The mixture with its alignment and its verdicts, e.g. `syn_en_fr (A = 1): aligned`."""
    mine = [s for s in members if mixture_text(s.key) == mixture]
    verdicts = "/".join(dict.fromkeys(s.verdict for s in mine))
    return f"{mixture} (A = {mine[0].key['alignment']:g}): {verdicts}"


def _file_name(key: tuple) -> str:
    return "translation_" + re.sub(r"[^A-Za-z0-9_.-]+", "_", "_".join(str(k) for k in key)) + ".png"
