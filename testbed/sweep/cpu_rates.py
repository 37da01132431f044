"""Measured on the project's 2-core CPU machine (2026-12-01), by

    python scripts/measure_cpu_rates.py A B

where A holds the sweeps of /work/main/runs except those trained beside 5-10x contention (the cpu_uniform
probes and alignment_cpu of sessions 6-8: their rates are not the machine's) and B the runs of a `make demo`
from a fresh clone. The micro/s5 entries were added on 2026-12-02 from `runs/alignment_s5_cpu` alone (its two
decoder runs, each trained beside another run on the other core), by the same script.

scripts/measure_cpu_rates.py says what each number is. testbed/sweep/plan.py reads them."""

# (ladder/size) -> median training tokens per second of wall-clock, how many runs measured it, and the
# rung's parameters N (an unmeasured rung takes the rate of the measured one nearest in N, scaled by 1/N)
TRAIN_TOKENS_PER_SECOND: dict[str, tuple[float, int, int]] = {
    "cpu/c1": (30598, 26, 14928),
    "cpu/c2": (20893, 17, 26232),
    "cpu/c3": (28378, 8, 41632),
    "cpu/c4": (17170, 6, 54240),
    "cpu/c5": (19179, 9, 107856),
    "cpu/c6": (15296, 5, 234048),
    "cpu_uniform/u1": (41225, 3, 41632),
    "cpu_uniform/u2": (34228, 2, 60360),
    "cpu_uniform/u3w": (31136, 1, 80112),
    "cpu_uniform/u4": (25363, 1, 107856),
    "cpu_uniform/u6": (15967, 1, 234048),
    "micro/s1": (70704, 6, 38520),
    "micro/s2": (47392, 6, 70624),
    "micro/s3": (29183, 12, 120680),
    "micro/s4": (18391, 1, 187920),
    "micro/s5": (10343, 2, 367424),
}
# (ladder/size) -> median eval seconds per (task, scored checkpoint), and how many runs measured it
EVAL_SECONDS_PER_TASK_CHECKPOINT: dict[str, tuple[float, int]] = {
    "cpu/c1": (4, 5),
    "cpu/c2": (3.95, 4),
    "cpu/c3": (8, 1),
    "cpu/c4": (7.76, 1),
    "cpu/c5": (6.9, 2),
    "cpu_uniform/u1": (1.86, 3),
    "cpu_uniform/u2": (1.93, 2),
    "cpu_uniform/u3w": (1.43, 1),
    "cpu_uniform/u4": (1.43, 1),
    "cpu_uniform/u6": (1.71, 1),
    "micro/s1": (1, 6),
    "micro/s2": (1.1, 6),
    "micro/s3": (1, 6),
    "micro/s4": (1, 1),
}
# (ladder/size) -> median seconds per finetuning (one checkpoint, task, size and LR or seed), the runs
# that measured it, and the protocol's steps x batch_size x max_len it ran
FINETUNE_SECONDS: dict[str, tuple[float, int, int]] = {
    "micro/s3": (17.2, 6, 102400),
    "micro/s5": (16, 2, 153600),
}
