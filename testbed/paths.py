"""Where the project's own files live: the repository, its configs/, its caches. A leaf: imports nothing of
testbed, so every module may import it."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIG_ROOT = REPO_ROOT / "configs"  # ladders, the data registry, eval suites and finetuning protocols


def cache_root() -> Path:
    """Token shards, tokenizers and task files (TESTBED_CACHE, default .cache/testbed in the repository)."""
    return Path(os.environ.get("TESTBED_CACHE") or REPO_ROOT / ".cache" / "testbed")
