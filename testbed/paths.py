"""Where the project's own files live: its configs (packaged, and the user's own), the repository, its caches.
A leaf: imports nothing of testbed, so every module may import it.

Configs (ladders, the data registry, eval suites and finetuning protocols, sweeps) are looked up in order in
the directories of TESTBED_CONFIG_PATH (colon-separated; `testbed --config-path DIR` prepends to it), then in
the packaged ones (`testbed/configs`: the repository's configs/ in a checkout, package data in a wheel). Each
directory has the same layout: data/, eval/, ladders/, sweeps/.
"""

from __future__ import annotations

import os
from pathlib import Path

CONFIG_PATH_ENV = "TESTBED_CONFIG_PATH"
PACKAGE_ROOT = Path(__file__).resolve().parent
# In a checkout testbed/configs links to the repository's configs/; in an installed wheel it is package data.
CONFIG_ROOT = PACKAGE_ROOT / "configs"
CONFIG_KINDS = ("data", "eval", "ladders", "sweeps")


def _checkout() -> Path | None:
    """The repository root when testbed runs from a source checkout (editable install included)."""
    root = PACKAGE_ROOT.parent
    return root if (root / "pyproject.toml").is_file() and (root / "configs").is_dir() else None


CHECKOUT = _checkout()
# Relative data paths of the data registry (data/real, ...) and the corpus builders' defaults resolve here: the
# repository in a checkout, the working directory of the command when testbed is installed.
REPO_ROOT = CHECKOUT or Path.cwd()


def cache_root() -> Path:
    """Token shards, tokenizers and task files: TESTBED_CACHE, else .cache/testbed in a checkout, else the
    user's cache directory ($XDG_CACHE_HOME/testbed, default ~/.cache/testbed)."""
    if os.environ.get("TESTBED_CACHE"):
        return Path(os.environ["TESTBED_CACHE"])
    if CHECKOUT is not None:
        return CHECKOUT / ".cache" / "testbed"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "testbed"


def config_dirs() -> list[Path]:
    """The config directories searched, first match wins: the user's (TESTBED_CONFIG_PATH), then the packaged."""
    user = [Path(p).expanduser() for p in os.environ.get(CONFIG_PATH_ENV, "").split(os.pathsep) if p]
    return [*user, CONFIG_ROOT]


def add_config_dirs(dirs: list[str]) -> None:
    """Put `dirs` first on TESTBED_CONFIG_PATH (through the environment, so workers and Slurm jobs see them)."""
    current = [p for p in os.environ.get(CONFIG_PATH_ENV, "").split(os.pathsep) if p]
    os.environ[CONFIG_PATH_ENV] = os.pathsep.join([str(Path(d).expanduser().resolve()) for d in dirs] + current)


def find_config(kind: str, name: str) -> Path | None:
    """`<dir>/<kind>/<name>.yaml` in the first config directory that has it, or None."""
    for root in config_dirs():
        path = root / kind / f"{name}.yaml"
        if path.is_file():
            return path
    return None


def config_names(kind: str) -> list[str]:
    """Every name of that kind across the config directories, sorted (a user's file may shadow a packaged one)."""
    return sorted({p.stem for root in config_dirs() for p in (root / kind).glob("*.yaml")})


def config_files(kind: str) -> list[Path]:
    """The YAML files of that kind across the config directories, one per file name (the first found): the data
    registry reads them all, so a user's data/mine.yaml adds to the packaged registry and a user's
    data/real.yaml replaces the packaged real.yaml."""
    found: dict[str, Path] = {}
    for root in config_dirs():
        for path in sorted((root / kind).glob("*.yaml")):
            found.setdefault(path.name, path)
    return sorted(found.values(), key=lambda p: p.name)
