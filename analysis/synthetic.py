"""Results tables generated from known laws: ground truth for testing the fitters and the protocol."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from analysis.laws import Params, get_law
from analysis.schema import to_frame

# Gadre et al.'s four small rungs plus 1.4B, total parameters N
GADRE_SIZES = {
    "0.011B": 10_639_872,
    "0.079B": 78_914_048,
    "0.154B": 153_677_376,
    "0.411B": 411_616_256,
    "1.4B": 1_439_795_200,
}
GADRE_MULTIPLIERS = (5, 10, 20, 40, 80, 160, 320, 640)
TASK_OFFSETS = {"task_a": 0.02, "task_b": -0.02}  # per-task accuracy offsets; their mean is 0


def law_table(
    loss_params: Mapping[str, Params],
    error_params: Params | None = None,
    sizes: Mapping[str, int] = GADRE_SIZES,
    multipliers: Sequence[float] = GADRE_MULTIPLIERS,
    noise: float = 0.0,
    seed: int = 0,
    seeds: int = 1,
    embeddings: int = 0,
) -> pd.DataFrame:
    """A results table of runs whose final losses follow the over-training law.

    loss_params: per training dataset, the law's parameters; each run gets one final val_loss row
    named like its dataset, times (1 + noise * standard normal). With error_params, each run also gets
    task rows whose mean accuracy is 1 - Err(loss). Every run also has a non-final (mid-training)
    row per number, worth 1 more, which analyses must ignore. seeds > 1 repeats every configuration
    with seeds 0 .. seeds - 1 (run ids end in -seed<k>), each with its own noise draw: the relative
    seed-to-seed SD of the loss is then `noise`. embeddings > 0: the law holds in the non-embedding N
    (`sizes`, the rows' params_nonembed) while a run has `embeddings` more params and trains M times
    those (tokens = M params, as testbed plans), so it holds in total params only approximately.
    """
    overtrain, loss_to_error = get_law("overtrain"), get_law("loss_to_error")
    rng = np.random.default_rng(seed)
    rows = []
    for dataset, params in loss_params.items():
        for size, n, m, k in ((s, n, m, k) for s, n in sizes.items() for m in multipliers for k in range(seeds)):
            total = n + embeddings
            tokens = int(m * total)
            loss = overtrain([[n], [tokens / n if embeddings else m]], params)[0] * (1 + noise * rng.standard_normal())
            run = {
                "run_id": f"{dataset}-{size}-m{m:g}" + (f"-seed{k}" if seeds > 1 else ""),
                "arch": "decoder",
                "size": size,
                "params": total,
                "params_nonembed": n,
                "dataset": dataset,
                "multiplier": m,
                "seed": k,
                "tokens": tokens,
                "flops": 6.0 * total * tokens,
            }
            numbers = [("val_loss", dataset, "loss", loss)]
            if error_params is not None:
                accuracy = 1 - loss_to_error([loss], error_params)[0]
                numbers += [("task", task, "acc", accuracy + offset) for task, offset in TASK_OFFSETS.items()]
            for final, shift in ((True, 0.0), (False, 1.0)):
                for kind, name, metric, value in numbers:
                    rows.append(run | dict(kind=kind, name=name, metric=metric, value=value + shift, final=final))
    return to_frame(rows)


# Clear-cut examples of Lourie et al.'s six classes: accuracy as a function of a C4-like validation
# loss (the released 104 models span about 2.4 to 5.5), and the noise standard deviation around it.
TAXONOMY: dict[str, tuple] = {
    "predictable": (lambda L: 0.22 + 2.5 * np.exp(-0.75 * L), 0.01),  # 1 - Err(L), Gadre-like
    "noisy": (lambda L: 0.22 + 2.5 * np.exp(-0.75 * L), 0.08),  # the same trend, 8 points of scatter
    "trendless": (lambda L: np.full_like(L, 0.25), 0.015),  # chance level throughout
    "inverse": (lambda L: 0.45 - 0.08 * (5.5 - L) / 3.1, 0.01),  # 8 points worse at the best loss
    "nonmonotonic": (lambda L: 0.30 + 0.12 * np.sin(np.pi * (5.5 - L) / 3.1), 0.01),  # up, then down
    "breakthrough": (lambda L: 0.25 + 0.40 / (1 + np.exp((L - 3.5) / 0.08)), 0.01),  # flat, jump, flat
}


def taxonomy_curve(
    kind: str, seed: int = 0, runs_per_corpus: int = 35, corpora: Sequence[str] = ("a", "b", "c")
) -> pd.DataFrame:
    """A curve of class `kind`: columns loss, value (accuracy), dataset (training corpus).

    Losses are uniform on [2.4, 5.5] per corpus; each corpus shifts accuracy by a constant
    (-1, 0, +1 points), as training corpora do at equal validation loss.
    """
    trend, noise = TAXONOMY[kind]
    rng = np.random.default_rng(seed)
    parts = []
    for offset, corpus in zip(np.linspace(-0.01, 0.01, len(corpora)), corpora, strict=True):
        loss = rng.uniform(2.4, 5.5, runs_per_corpus)
        value = trend(loss) + offset + noise * rng.standard_normal(runs_per_corpus)
        parts.append(pd.DataFrame({"loss": loss, "value": value, "dataset": corpus}))
    return pd.concat(parts, ignore_index=True)
