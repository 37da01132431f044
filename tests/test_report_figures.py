"""The report's figures: log-log loss axes, bootstrap bands, dashed and labelled fits that break their
constraints or failed, 150 dpi, and a page per task."""

from __future__ import annotations

import dataclasses
import struct
from pathlib import Path

import matplotlib.pyplot as plt
import pytest

import analysis.plots
from analysis.extrapolate import extrapolate
from analysis.fitting import failed
from analysis.plots import DPI, plot_loss_vs_compute
from analysis.report import save_report, task_page_name
from analysis.synthetic import law_table

LOSS = {"synth_a": {"alpha": 150.0, "beta": 300.0, "e": -0.25, "E": 1.7}}
ERROR = {"epsilon": 0.75, "k": 3.0, "gamma": 0.6}


@pytest.fixture(scope="module")
def result():
    return extrapolate(law_table(LOSS, ERROR, noise=0.01), n_bootstrap=20)


def png_dpi(path: Path) -> float:
    """The resolution a PNG declares (its pHYs chunk), in dots per inch."""
    data = path.read_bytes()
    at = data.index(b"pHYs")
    x, _, unit = struct.unpack(">IIB", data[at + 4 : at + 13])
    assert unit == 1  # per metre
    return x * 0.0254


def drawn(monkeypatch) -> list[plt.Figure]:
    """Keep the figures plot_* would close, to look at what they drew."""
    figures: list[plt.Figure] = []

    def keep(fig, path, dpi=DPI):
        figures.append(fig)
        fig.savefig(path, dpi=dpi)
        return path

    monkeypatch.setattr(analysis.plots, "_save", keep)
    return figures


def test_loss_vs_compute_is_log_log_with_bands(result, tmp_path, monkeypatch):
    figures = drawn(monkeypatch)
    plot_loss_vs_compute(result, tmp_path / "f.png")
    ax = figures[0].axes[0]
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    bands = [c for c in ax.collections if type(c).__name__ in ("FillBetweenPolyCollection", "PolyCollection")]
    assert len(bands) == result.runs["multiplier"].nunique()  # one band per multiplier's curve
    assert all(line.get_linestyle() == "-" for line in ax.lines if len(line.get_xdata()) == 100)


def test_a_fit_that_breaks_its_constraints_is_dashed_and_labelled(result, tmp_path, monkeypatch):
    fits = result.fits["synth_a"]
    broken = dataclasses.replace(fits.loss, params={**fits.loss.params, "E": -0.5})
    bad = dataclasses.replace(result, fits={"synth_a": dataclasses.replace(fits, loss=broken, bootstrap=None)})
    figures = drawn(monkeypatch)
    plot_loss_vs_compute(bad, tmp_path / "f.png")
    ax = figures[0].axes[0]
    curves = [line for line in ax.lines if len(line.get_xdata()) == 100]
    assert curves and all(line.get_linestyle() == "--" for line in curves)
    assert "breaks its constraints" in ax.get_title()


def test_a_failed_fit_has_no_curve_and_says_why(result, tmp_path, monkeypatch):
    fits = result.fits["synth_a"]
    gone = failed(fits.loss.law, 3, "no_convergence", "it did not converge")
    bad = dataclasses.replace(result, fits={"synth_a": dataclasses.replace(fits, loss=gone, bootstrap=None)})
    figures = drawn(monkeypatch)
    plot_loss_vs_compute(bad, tmp_path / "f.png")
    ax = figures[0].axes[0]
    assert not [line for line in ax.lines if len(line.get_xdata()) == 100]
    assert "fit failed (no_convergence)" in ax.get_title()


def test_figures_are_written_at_150_dpi_or_more(result, tmp_path):
    index = save_report(result, tmp_path / "report")
    assert png_dpi(index.parent / "loss_vs_compute.png") >= 150
    assert png_dpi(index.parent / "error_vs_loss.png") >= 150


def test_task_page_names_are_safe_file_names():
    assert task_page_name("mmlu/abstract algebra") == "mmlu_abstract_algebra"
    assert task_page_name("../x") == "_x" and task_page_name("..") == "task"
