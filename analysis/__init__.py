"""Scaling-law analysis of a results table: numpy, scipy, pandas and matplotlib only."""

import os
import sys

# The analysis solves thousands of tiny systems (4 x 4 normal equations, L-BFGS on 5 parameters).
# Multi-threaded OpenBLAS only adds hand-off cost to those, and on a busy 2-core machine its
# spinning threads made L-BFGS-B 18x slower. Default numpy's OpenBLAS to one thread when numpy is
# not loaded yet; a value already in the environment wins. OMP and MKL are left alone: torch reads
# them, and `testbed` (which imports this package) trains with torch. The fits also cap BLAS at one
# thread for their own duration, whenever numpy was loaded (analysis.threads).
if "numpy" not in sys.modules:
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
