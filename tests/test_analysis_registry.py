"""The registry behind every extension point, and the analysis registries that read it."""

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import analysis.fitting
import analysis.resample
from analysis.cli import main
from analysis.errors import AnalysisError
from analysis.extrapolate import extrapolate
from analysis.fitting import FITTERS, Fitter, fit_differential_evolution, fit_law, fit_least_squares_grid
from analysis.laws import LAWS, get_law
from analysis.registry import Registry
from analysis.studies import STUDIES
from analysis.synthetic import law_table


class PluginError(Exception):
    """Stands for another package's error type (testbed passes TestbedError)."""


@pytest.fixture
def plugin(tmp_path, monkeypatch) -> str:
    """The name of a fresh module on sys.path that defines `VALUE` and `Nested.attr`."""
    name = f"registry_plugin_{tmp_path.name}"
    (tmp_path / f"{name}.py").write_text("VALUE = object()\nclass Nested:\n    attr = 42\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


def test_lazy_target_is_imported_on_first_get_only(plugin):
    registry = Registry("backend", PluginError)
    registry.register("lazy", f"{plugin}:VALUE")
    registry.register("nested", f"{plugin}:Nested.attr")
    assert plugin not in sys.modules and "lazy" in registry and registry.names() == ["lazy", "nested"]
    value = registry.get("lazy")
    assert plugin in sys.modules and value is sys.modules[plugin].VALUE
    assert registry.get("lazy") is value and registry["lazy"] is value  # loaded once, kept
    assert registry.get("nested") == 42


def test_unknown_name_is_one_line_with_did_you_mean_and_known_names():
    registry = Registry("stage", PluginError)
    for name in ("train", "evaluate", "collect"):
        registry.register(name, name.upper().__len__)
    with pytest.raises(PluginError) as caught:
        registry.get("evalute")
    message = str(caught.value)
    assert message == "unknown stage 'evalute' (did you mean 'evaluate'?); known stages: train, evaluate, collect"
    assert "\n" not in message
    with pytest.raises(PluginError, match=r"^unknown stage 'zzz'; known stages: train, evaluate, collect$"):
        registry.get("zzz")


def test_duplicate_refused_and_first_entry_kept():
    registry = Registry("kind", PluginError)
    first = registry.register("a", 1)
    with pytest.raises(PluginError, match="kind 'a' is already registered"):
        registry.register("a", 2)
    assert first == 1 and registry.get("a") == 1 and len(registry) == 1


def test_error_class_is_the_registrys_own():
    default, custom = Registry("thing"), Registry("thing", PluginError, plural="things galore")
    with pytest.raises(LookupError):
        default.get("x")
    with pytest.raises(PluginError, match="known things galore: none") as caught:
        custom.get("x")
    assert not isinstance(caught.value, LookupError)


def test_order_decorator_and_bad_references(plugin):
    registry = Registry("task generator", PluginError)

    @registry.register("second")
    def generate():
        return "made"

    registry.register("first", 1)
    assert list(registry) == ["second", "first"] and dict(registry.items()) == {"second": generate, "first": 1}
    assert registry.get("second")() == "made"
    with pytest.raises(PluginError, match="not a 'package.module:attr' reference"):
        registry.register("bad", "no colon here")
    registry.register("missing", f"{plugin}:Nope")
    with pytest.raises(PluginError, match=f"'{plugin}:Nope' names nothing"):
        registry.get("missing")


def test_registry_is_standard_library_only():
    code = (
        "import sys, analysis.registry; bad = [m for m in ('numpy', 'pandas') if m in sys.modules]; assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[1])


# --- the analysis registries ------------------------------------------------------------------


def test_laws_fitters_and_studies_are_registries():
    assert LAWS.names()[:2] == ["overtrain", "loss_to_error"] and get_law("power_law") is LAWS["power_law"]
    assert FITTERS.names() == ["least_squares_grid", "huber_log", "differential_evolution"]
    assert STUDIES.names() == ["gadre2024", "olmo_ladder", "pythia"]
    with pytest.raises(AnalysisError, match=r"unknown law 'overtrian' \(did you mean 'overtrain'\?\); known laws: "):
        get_law("overtrian")
    with pytest.raises(AnalysisError, match="unknown fitting method 'lsq'; known fitting methods: least_squares"):
        fit_law(get_law("power_law"), [1.0, 2.0, 3.0], [3.0, 2.0, 1.5], "lsq")


def test_study_module_is_imported_when_asked_for():
    code = (
        "import sys, analysis.studies as s; assert 'analysis.reproduce' not in sys.modules; "
        "assert s.STUDIES.get('gadre2024').name == 'gadre2024' and 'analysis.reproduce' in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[1])


def test_bad_law_on_the_command_line_suggests_one(capsys):
    assert main(["fit", "results.parquet", "--law", "overtrian"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "(did you mean 'overtrain'?)" in err


def test_fit_law_reads_the_registry():
    law = get_law("loss_to_error")
    x = np.linspace(2.5, 4.0, 8)
    y = law(x, {"epsilon": 0.75, "k": 3.0, "gamma": 0.6})
    by_name = fit_law(law, x, y, "differential_evolution", seed=1)
    direct = fit_differential_evolution(law, x, y, seed=1)
    assert by_name.method == "differential_evolution" and by_name.params == direct.params
    assert by_name.params["gamma"] == pytest.approx(0.6, rel=1e-3)


def test_a_new_fitter_is_one_entry(monkeypatch):
    calls = {"fit": 0, "refit": 0}

    def fit(law, x, y):
        calls["fit"] += 1
        return replace(fit_least_squares_grid(law, x, y), method="counting")

    def refit(law, x, y, start):
        calls["refit"] += 1
        return fit_least_squares_grid(law, x, y, starts=(start,))

    registry = Registry("fitting method", AnalysisError)
    for name, fitter in FITTERS.items():
        registry.register(name, fitter)
    registry.register("counting", Fitter(fit, refit, least_squares=False))
    monkeypatch.setattr(analysis.fitting, "FITTERS", registry)
    monkeypatch.setattr(analysis.resample, "FITTERS", registry)
    loss = {"synth": {"alpha": 150.0, "beta": 300.0, "e": -0.25, "E": 1.7}}
    result = extrapolate(law_table(loss), method="counting", n_bootstrap=6)
    fits = result.fits["synth"]
    assert fits.loss.method == "counting" and fits.loss.params["e"] == pytest.approx(-0.25, rel=1e-3)
    assert calls == {"fit": 1, "refit": 6} and fits.bootstrap.n_ok == 6
