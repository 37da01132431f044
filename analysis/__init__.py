"""Scaling-law analysis of a results table: numpy, scipy, pandas and matplotlib only."""

import os
import sys

# The analysis solves thousands of tiny systems (4 x 4 normal equations, L-BFGS on 5 parameters).
# Multi-threaded OpenBLAS only adds hand-off cost to those, and on a busy 2-core machine its
# spinning threads made L-BFGS-B 18x slower. Default to one BLAS thread when numpy is not loaded
# yet; a value already in the environment wins.
if "numpy" not in sys.modules:
    for _variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_variable, "1")
