"""Measured on the project's 2-core CPU machine (2026-11-30), by

    python scripts/measure_cpu_rates.py /work/main/runs

scripts/measure_cpu_rates.py says what each number is. testbed/sweep/plan.py reads them."""

# (ladder/size) -> median training tokens per second of wall-clock, how many runs measured it, and the
# rung's parameters N (an unmeasured rung takes the rate of the measured one nearest in N, scaled by 1/N)
TRAIN_TOKENS_PER_SECOND: dict[str, tuple[float, int, int]] = {
    "cpu/c1": (30598, 26, 14928),
    "cpu/c2": (20893, 17, 26232),
    "cpu/c3": (28378, 8, 41632),
    "cpu/c4": (17170, 6, 54240),
    "cpu/c5": (19373, 8, 107856),
    "cpu/c6": (15296, 5, 234048),
    "micro/s1": (70704, 6, 38520),
    "micro/s2": (47392, 6, 70624),
    "micro/s3": (28752, 10, 120680),
    "micro/s4": (18391, 1, 187920),
}
# (ladder/size) -> median eval seconds per (task, scored checkpoint), and how many runs measured it
EVAL_SECONDS_PER_TASK_CHECKPOINT: dict[str, tuple[float, int]] = {
    "cpu/c1": (4.67, 5),
    "cpu/c2": (4.61, 4),
    "cpu/c3": (9.33, 1),
    "cpu/c4": (9.06, 1),
    "cpu/c5": (8.22, 3),
    "micro/s1": (1, 6),
    "micro/s2": (1.1, 6),
    "micro/s3": (1, 6),
    "micro/s4": (1, 1),
}
# (ladder/size) -> median seconds per finetuning (one checkpoint, task, size and LR or seed), the runs
# that measured it, and the protocol's steps x batch_size x max_len it ran
FINETUNE_SECONDS: dict[str, tuple[float, int, int]] = {
    "micro/s3": (129, 4, 153600),
}
