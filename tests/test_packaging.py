"""The built wheel stands on its own: installed elsewhere, its packaged configs and a user's config directory
are found from any working directory."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def clean_env(**env: str) -> dict[str, str]:
    """This environment without what points into the checkout or at a user's configs and caches."""
    drop = ("PYTHONPATH", "TESTBED_CONFIG_PATH", "TESTBED_CACHE")
    return {k: v for k, v in os.environ.items() if k not in drop} | env


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh venv with the wheel installed (--no-deps); the project venv's site-packages supplies the
    dependencies through a plain path entry (its .pth files, the editable install among them, are not run)."""
    root = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", root / "dist", REPO],
        check=True,
        cwd=root,
        env=clean_env(),
    )
    (wheel,) = (root / "dist").glob("testbed-*.whl")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    pip = [sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "-q", wheel]
    subprocess.run(pip, check=True, env=clean_env())
    # after the install: pip would take the project's own (editable) testbed for this one and skip it
    (Path(site) / "project_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return venv


def run_installed(venv: Path, cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [venv / "bin" / "testbed", *args], cwd=cwd, env=clean_env(**env), capture_output=True, text=True, timeout=300
    )


@pytest.mark.slow
def test_the_wheel_carries_its_configs_and_finds_a_users(installed, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = run_installed(installed, elsewhere, "list", "suites")
    assert where.returncode == 0, where.stderr
    assert str(installed) in where.stdout and str(REPO) not in where.stdout  # the packaged files, not the checkout's
    assert {"synthetic", "docs_cloze", "gadre46"} <= {line.split()[0] for line in where.stdout.splitlines()[1:]}

    plan = run_installed(installed, elsewhere, "sweep", "plan", "tiny")  # a packaged sweep by name
    assert plan.returncode == 0, plan.stderr
    assert "dec-s1-syn_en-m1-seed0" in plan.stdout and "dec-s3-syn_en-m2-seed0" in plan.stdout

    mine = tmp_path / "my_configs"
    (mine / "data").mkdir(parents=True)
    (mine / "sweeps").mkdir()
    (mine / "data" / "mine.yaml").write_text("mixtures:\n  en_de_mine: {syn_en: 0.25, syn_de: 0.75}\n")
    (mine / "sweeps" / "mine.yaml").write_text(
        "name: mine\ndefaults: {model: {ladder: micro}}\n"
        "grid:\n  - {sizes: [s1], datasets: [en_de_mine], multipliers: [2]}\n"
    )
    by_env = run_installed(installed, elsewhere, "sweep", "plan", "mine", "--json", TESTBED_CONFIG_PATH=str(mine))
    assert by_env.returncode == 0, by_env.stderr
    assert "en_de_mine" in by_env.stdout
    by_option = run_installed(installed, elsewhere, "--config-path", str(mine), "sweep", "plan", "mine")
    assert by_option.returncode == 0 and "en_de_mine" in by_option.stdout, by_option.stderr
    unknown = run_installed(installed, elsewhere, "sweep", "plan", "mine")  # without the user's directory
    assert unknown.returncode == 2 and unknown.stderr.count("\n") == 1
