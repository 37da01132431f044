"""The analysis stands without the training stack: what `pip install testbed` (the core) installs is enough for
`import analysis` and `testbed analyze`, and a training command without the `train` extra says so in one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from analysis.synthetic import law_table
from testbed.cli import TRAIN_EXTRA_MODULES

REPO = Path(__file__).resolve().parents[1]
TRAIN_ONLY = sorted(TRAIN_EXTRA_MODULES)  # the `train` extra as modules: none may be imported by the analysis

# Run before anything else: every module of the train extra is refused, as if it were not installed
BLOCKER = f"""
import sys
class _NotInstalled:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {TRAIN_ONLY!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None
sys.meta_path.insert(0, _NotInstalled())
"""


def python(code: str, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO), MPLBACKEND="Agg")
    return subprocess.run(
        [sys.executable, "-c", BLOCKER + code, *args], env=env, capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    loss = {"synth_a": {"alpha": 150.0, "beta": 300.0, "e": -0.25, "E": 1.7}}
    path = tmp_path_factory.mktemp("results") / "results.parquet"
    law_table(loss, {"epsilon": 0.75, "k": 3.0, "gamma": 0.6}, noise=0.001).to_parquet(path)
    return path


def test_the_blocker_blocks():
    done = python("import torch")
    assert done.returncode != 0 and "No module named 'torch'" in done.stderr


def test_import_analysis_imports_no_training_module():
    code = """
import pkgutil, importlib, analysis
for module in pkgutil.walk_packages(analysis.__path__, "analysis."):
    importlib.import_module(module.name)
print(sorted(m for m in sys.modules if m.split(".")[0] in {blocked!r}))
""".replace("{blocked!r}", repr(TRAIN_ONLY))
    done = python(code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_testbed_analyze_fit_and_classify_without_the_training_stack(results):
    cli = "from testbed.cli import main\nsys.exit(main(sys.argv[1:]))\n"
    fit = python(cli, "analyze", "fit", str(results), "--law", "overtrain", "--json")
    assert fit.returncode == 0, fit.stderr
    assert json.loads(fit.stdout)
    classify = python(cli, "analyze", "classify", str(results), "--x", "synth_a", "--bootstrap", "10", "--json")
    assert classify.returncode == 0, classify.stderr
    assert json.loads(classify.stdout)
    listed = python(cli, "list", "laws")
    assert listed.returncode == 0 and "overtrain" in listed.stdout, listed.stderr


def test_python_m_analysis_cli_without_the_training_stack(results):
    done = python("import runpy; runpy.run_module('analysis.cli', run_name='__main__')", "fit", str(results))
    assert done.returncode == 0, done.stderr


def test_training_without_the_extra_is_one_line(tmp_path):
    cli = "from testbed.cli import main\nsys.exit(main(sys.argv[1:]))\n"
    done = python(cli, "train", "model.size=s1")
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "pip install 'testbed[train]'" in done.stderr, done.stderr
