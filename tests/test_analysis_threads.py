"""The fits run with one BLAS thread even when numpy was loaded (with more) before `analysis`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

SCRIPT = """
import numpy as np  # first: OpenBLAS starts with OPENBLAS_NUM_THREADS=2, before analysis could default it
from threadpoolctl import threadpool_info

def blas_threads():
    return sorted({pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"})

before = blas_threads()
from analysis.fitting import DIFFERENTIAL_EVOLUTION, HUBER_LOG, LEAST_SQUARES_GRID, fit_law
from analysis.laws import Law, grid

seen = []

def power(x, E, A, alpha):
    seen.append(blas_threads())  # inside the fit, while the optimiser evaluates the law
    return E + A * x[0] ** -alpha

law = Law("p", "E + A D^-alpha", ("D",), ("E", "A", "alpha"), power,
          ((0.0, 10.0), (1e-3, 1e4), (0.01, 2.0)), grid((1.0,), (10.0,), (0.3,)), log_scale=("A",))
x = np.geomspace(1e3, 1e6, 12)
for method in (LEAST_SQUARES_GRID, HUBER_LOG, DIFFERENTIAL_EVOLUTION):
    seen.clear()
    fit = fit_law(law, x, 1.5 + 20 * x**-0.4, method, **({"maxiter": 5} if method == DIFFERENTIAL_EVOLUTION else {}))
    assert seen and all(s == [1] for s in seen), (method, seen[:3])
print(before, blas_threads())
"""


def test_fits_cap_blas_threads_and_restore_them():
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    env |= {"OPENBLAS_NUM_THREADS": "2", "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("]")[0] == "[2" and done.stdout.strip().endswith("[2]")  # 2 before and after
