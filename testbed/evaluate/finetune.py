"""Translation finetuning of pretraining checkpoints: Isik et al.'s protocol (arXiv 2402.04177), scaled down.

For each selected checkpoint of a run and each finetuning-set size (tokens), `finetune_run`
1. draws the finetuning set: the first pairs of the task's train split whose tokens (source + target,
   as the checkpoint's tokenizer counts them) reach the size;
2. finetunes all weights with AdamW at a constant LR, a fixed number of steps, once per LR of the
   protocol's grid, and keeps the LR with the lowest cross-entropy on a validation split;
3. evaluates that model on a held-out test split: greedy decoding (at most `max_new_tokens`) scored with
   BLEU and chrF (sacrebleu) and ROUGE-L (rouge-score), the cross-entropy of the references (nats per
   target token, teacher-forced), and COMET when the protocol names a local COMET model;
4. writes the predictions and a summary under `<run>/finetune/<task>/size_<N>/step_<S>/`, then one row
   per metric: kind="translation", name="<src>-<dst>", finetune_size, alignment (the run's mixture for
   this pair), harness="testbed-finetune/<protocol>", step = the pretraining checkpoint's step.

The no-pretraining baseline is the same model at its initialisation (the run's own seed: the weights the
pretraining started from), finetuned the same way; its rows have step 0 and tokens 0.

Formats: T5 maps source -> target (encoder input `<src><eos>`, labels `<tgt><eos>`); the decoder reads
`<src> = <tgt><eos>` with the loss on ` <tgt><eos>` only, and decodes after `<src> =`.

Already-finetuned (step, task, size, protocol) combinations are skipped; a failed one is recorded in
`<run>/finetune_failures.json` and the others still run.
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from testbed.checkpoint import step_dir
from testbed.errors import TestbedError, one_line
from testbed.evaluate.alignment import mixture_alignment
from testbed.io import write_text
from testbed.paths import CONFIG_ROOT
from testbed.resolve import load_run_config
from testbed.rundir import RunDir

METRICS = ("bleu", "chrf", "rougeL", "cross_entropy")
FAILURES_FILE = "finetune_failures.json"
BASELINE_STEP = 0  # the rows of the no-pretraining baseline


@dataclass
class Protocol:
    """How every checkpoint is finetuned and scored: configs/eval/finetune*.yaml."""

    name: str = "finetune"
    steps: int = 300  # optimizer steps, whatever the finetuning-set size (Isik: 300)
    batch_size: int = 32  # pairs per step (Isik: 128)
    lrs: list[float] = field(default_factory=lambda: [3e-4, 1e-3, 3e-3])  # constant LR grid; best on valid
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    max_len: int = 128  # tokens kept of each source and each target
    max_new_tokens: int = 128  # greedy decoding stops here (or at EOS)
    n_valid: int = 256  # pairs of the valid split that pick the LR
    n_test: int = 512  # pairs of the test split that are scored
    decode_batch: int = 64
    seed: int = 0
    baseline: bool = True  # also finetune the run's initialisation (step 0)
    comet_model: str | None = None  # a local COMET checkpoint (unbabel-comet, the `comet` extra)

    @property
    def harness(self) -> str:
        return f"testbed-finetune/{self.name}"


def load_protocol(name: str | Path = "finetune") -> Protocol:
    from testbed.config import load_schema, read_yaml

    path = Path(name)
    if path.suffix not in (".yaml", ".yml"):
        path = CONFIG_ROOT / "eval" / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in (CONFIG_ROOT / "eval").glob("finetune*.yaml"))
        raise TestbedError(f"--protocol {str(name)!r}: no such protocol (known: {', '.join(known)})")
    protocol = load_schema(Protocol, str(path), [{"name": path.stem}, read_yaml(path)])
    for key in ("steps", "batch_size", "max_len", "max_new_tokens", "n_valid", "n_test", "decode_batch"):
        if getattr(protocol, key) <= 0:
            raise TestbedError(f"{path}: {key}={getattr(protocol, key)!r}: must be positive")
    if not protocol.lrs or any(not (lr > 0 and math.isfinite(lr)) for lr in protocol.lrs):
        raise TestbedError(f"{path}: lrs={protocol.lrs!r}: a non-empty list of positive learning rates")
    return protocol


# --- tasks and their pairs ---------------------------------------------------------------------------

@dataclass(frozen=True)
class TranslationTask:
    corpus: str  # the registry's parallel corpus name, or "<src>-<dst>" for built-in synthetic pairs
    src: str
    dst: str

    @property
    def name(self) -> str:
        return f"{self.src}-{self.dst}"


def known_tasks() -> dict[str, TranslationTask]:
    """Parallel corpora of the data registry (configs/data `parallel:`), plus every synthetic pair."""
    from testbed.data import sources
    from testbed.data.synthetic import LANGUAGES

    tasks = {f"{a}-{b}": TranslationTask(f"{a}-{b}", a, b) for a in LANGUAGES for b in LANGUAGES if a != b}
    for name, corpus in getattr(sources, "known_parallel", dict)().items():
        tasks[name] = TranslationTask(name, *corpus.pair)
    return tasks


def resolve_task(name: str) -> TranslationTask:
    tasks = known_tasks()
    if name not in tasks:
        raise TestbedError(f"--task {name!r}: unknown translation task (known: {', '.join(sorted(tasks))})")
    return tasks[name]


def task_pairs(task: TranslationTask, split: str, n_pairs: int, world_seed: int) -> list[tuple[str, str]]:
    """The first `n_pairs` (source, reference) pairs of a split: the one place pairs come from."""
    from testbed.data import sources

    parallel = getattr(sources, "known_parallel", dict)()
    if task.corpus in parallel:
        from testbed.data.readers import pairs

        return pairs(parallel[task.corpus], split, n_pairs, world_seed)
    from testbed.data.synthetic import parallel_pairs

    return parallel_pairs(task.src, task.dst, split, n_pairs, seed=world_seed)


def checked_pairs(task: TranslationTask, split: str, n_pairs: int, world_seed: int) -> list[tuple[str, str]]:
    got = task_pairs(task, split, n_pairs, world_seed)
    if not got:
        raise TestbedError(f"task {task.corpus!r}: the {split} split has no pairs (empty reference file?)")
    empty = [i for i, (s, t) in enumerate(got) if not s.strip() or not t.strip()]
    if empty:
        raise TestbedError(f"task {task.corpus!r}: {split} pair {empty[0]} has an empty source or reference")
    return got


# --- encoding ------------------------------------------------------------------------------------------

@dataclass
class Encoded:
    prompt: list[int]  # decoder: `<src> =`; T5: `<src><eos>`
    target: list[int]  # ` <tgt><eos>` (decoder) / `<tgt><eos>` (T5)


class Formatter:
    def __init__(self, tokenizer, seq2seq: bool, max_len: int):
        self.tok, self.seq2seq, self.max_len = tokenizer, seq2seq, max_len
        self.eos = tokenizer.eos_token_id
        self.pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos

    def ids(self, text: str) -> list[int]:
        return self.tok(text, add_special_tokens=False).input_ids[: self.max_len]

    def encode(self, src: str, tgt: str) -> Encoded:
        if self.seq2seq:
            return Encoded(self.ids(src) + [self.eos], self.ids(tgt) + [self.eos])
        return Encoded(self.ids(src + " ="), self.ids(" " + tgt) + [self.eos])

    def batch(self, items: list[Encoded]) -> tuple[dict, torch.Tensor]:
        """Model kwargs (right-padded) and labels aligned with the logits (-100: not scored)."""
        if self.seq2seq:
            src_len = max(len(e.prompt) for e in items)
            tgt_len = max(len(e.target) for e in items)
            ids = torch.full((len(items), src_len), self.pad)
            mask = torch.zeros((len(items), src_len), dtype=torch.long)
            labels = torch.full((len(items), tgt_len), -100)
            for i, e in enumerate(items):
                ids[i, : len(e.prompt)] = torch.tensor(e.prompt)
                mask[i, : len(e.prompt)] = 1
                labels[i, : len(e.target)] = torch.tensor(e.target)
            decoder_inputs = torch.full_like(labels, self.pad)  # start token = pad = 0, then the target
            decoder_inputs[:, 1:] = labels[:, :-1].masked_fill(labels[:, :-1] == -100, self.pad)
            return {"input_ids": ids, "attention_mask": mask, "decoder_input_ids": decoder_inputs}, labels
        length = max(len(e.prompt) + len(e.target) for e in items) - 1
        ids = torch.full((len(items), length), self.pad)
        mask = torch.zeros((len(items), length), dtype=torch.long)
        labels = torch.full((len(items), length), -100)
        for i, e in enumerate(items):
            seq = e.prompt + e.target
            ids[i, : len(seq) - 1] = torch.tensor(seq[:-1])
            mask[i, : len(seq) - 1] = 1
            labels[i, len(e.prompt) - 1 : len(seq) - 1] = torch.tensor(e.target)
        return {"input_ids": ids, "attention_mask": mask}, labels


def summed_ce(model, inputs: dict, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(cross-entropy summed over labelled tokens, per-row sums) of one batch."""
    logits = model(**inputs, use_cache=False).logits.float()
    per_token = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100, reduction="none")
    per_row = per_token.view(labels.shape).sum(dim=1)
    return per_row.sum(), per_row


@torch.no_grad()
def reference_ce(model, fmt: Formatter, items: list[Encoded], batch_size: int) -> tuple[float, list[float]]:
    """Mean cross-entropy per reference token (nats) and per-sentence means, teacher-forced."""
    model.eval()
    total, tokens, per_sentence = 0.0, 0, []
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        inputs, labels = fmt.batch(chunk)
        ce, rows = summed_ce(model, inputs, labels)
        counts = (labels != -100).sum(dim=1)
        total += ce.item()
        tokens += int(counts.sum())
        per_sentence += (rows / counts).tolist()
    return total / tokens, per_sentence


def finetune(model, fmt: Formatter, train: list[Encoded], protocol: Protocol, lr: float):
    """Full-weight AdamW at a constant LR for protocol.steps steps over shuffled epochs of `train`."""
    model.train()
    decay = [p for p in model.parameters() if p.ndim >= 2]
    rest = [p for p in model.parameters() if p.ndim < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": protocol.weight_decay},
                                   {"params": rest, "weight_decay": 0.0}], lr=lr, betas=(0.9, 0.98))
    generator = torch.Generator().manual_seed(protocol.seed)
    order: list[int] = []
    losses = []
    for _ in range(protocol.steps):
        batch = []
        while len(batch) < min(protocol.batch_size, len(train)):
            if not order:
                order = torch.randperm(len(train), generator=generator).tolist()
            batch.append(train[order.pop()])
        inputs, labels = fmt.batch(batch)
        ce, _ = summed_ce(model, inputs, labels)
        loss = ce / (labels != -100).sum()
        if not torch.isfinite(loss):
            raise TestbedError(f"finetuning diverged at lr={lr:g} (loss {loss.item()})")
        loss.backward()
        if protocol.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), protocol.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
    model.eval()
    return losses


@torch.no_grad()
def greedy_decode(model, fmt: Formatter, prompts: list[list[int]], protocol: Protocol) -> list[str]:
    """Greedy continuations, cut at EOS. Decoder prompts are batched by equal length (no padding)."""
    model.eval()
    out: list[str | None] = [None] * len(prompts)
    if fmt.seq2seq:
        groups = [list(range(i, min(i + protocol.decode_batch, len(prompts))))
                  for i in range(0, len(prompts), protocol.decode_batch)]
    else:
        by_length: dict[int, list[int]] = {}
        for i, p in enumerate(prompts):
            by_length.setdefault(len(p), []).append(i)
        groups = [idx[j : j + protocol.decode_batch] for idx in by_length.values()
                  for j in range(0, len(idx), protocol.decode_batch)]
    for group in groups:
        width = max(len(prompts[i]) for i in group)
        ids = torch.full((len(group), width), fmt.pad)
        mask = torch.zeros_like(ids)
        for row, i in enumerate(group):
            ids[row, : len(prompts[i])] = torch.tensor(prompts[i])
            mask[row, : len(prompts[i])] = 1
        generated = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=protocol.max_new_tokens,
                                   do_sample=False, num_beams=1, eos_token_id=fmt.eos, pad_token_id=fmt.pad,
                                   use_cache=True)
        if not fmt.seq2seq:
            generated = generated[:, width:]
        for row, i in enumerate(group):
            tokens = generated[row].tolist()
            if fmt.seq2seq and tokens and tokens[0] == fmt.pad:
                tokens = tokens[1:]  # the decoder start token
            if fmt.eos in tokens:
                tokens = tokens[: tokens.index(fmt.eos)]
            out[i] = fmt.tok.decode(tokens, skip_special_tokens=True).strip()
    return out


def score(hypotheses: list[str], references: list[str], sources: list[str], comet_model: str | None) -> dict:
    """metric -> (value, stderr): BLEU, chrF (corpus level, sacrebleu), ROUGE-L F1 x 100 (mean over
    sentences), and COMET (x 100) with a local model."""
    import sacrebleu
    from rouge_score import rouge_scorer

    scores = {
        "bleu": (sacrebleu.corpus_bleu(hypotheses, [references]).score, None),
        "chrf": (sacrebleu.corpus_chrf(hypotheses, [references]).score, None),
    }
    scorer = rouge_scorer.RougeScorer(["rougeL"])
    rouge = [100 * scorer.score(ref, hyp)["rougeL"].fmeasure for hyp, ref in zip(hypotheses, references, strict=True)]
    scores["rougeL"] = (sum(rouge) / len(rouge), stderr(rouge))
    if comet_model:
        scores["comet"] = comet(comet_model, hypotheses, references, sources)
    return scores


def comet(model_path: str, hypotheses: list[str], references: list[str], sources: list[str]):
    try:
        from comet import load_from_checkpoint
    except ImportError as err:
        raise TestbedError("comet_model is set but unbabel-comet is not installed (pip install 'testbed[comet]')") from err
    path = Path(model_path).expanduser()
    if not path.is_file():
        raise TestbedError(f"comet_model={model_path!r}: no such checkpoint file (a local COMET .ckpt)")
    model = load_from_checkpoint(str(path))
    data = [{"src": s, "mt": h, "ref": r} for s, h, r in zip(sources, hypotheses, references, strict=True)]
    out = model.predict(data, batch_size=32, gpus=1 if torch.cuda.is_available() else 0, progress_bar=False)
    values = [100 * v for v in out.scores]
    return sum(values) / len(values), stderr(values)


def stderr(values: list[float]) -> float | None:
    n = len(values)
    if n < 2:
        return None
    mu = sum(values) / n
    return math.sqrt(sum((v - mu) ** 2 for v in values) / (n - 1) / n)


# --- one checkpoint --------------------------------------------------------------------------------------

def load_checkpoint(hf_dir: Path):
    """(model, tokenizer, seq2seq) of a save_pretrained dir; TestbedError naming it when unusable."""
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

    from testbed.evaluate.harness import check_checkpoint
    from testbed.models import untie_t5_head

    config = check_checkpoint(hf_dir)
    seq2seq = bool(config.get("is_encoder_decoder"))
    try:
        tokenizer = AutoTokenizer.from_pretrained(hf_dir)
        model = (AutoModelForSeq2SeqLM if seq2seq else AutoModelForCausalLM).from_pretrained(hf_dir, dtype=torch.float32)
    except Exception as exc:
        raise TestbedError(f"{hf_dir}: cannot load the checkpoint ({one_line(exc)})") from exc
    untie_t5_head(model, hf_dir)
    check_vocab(hf_dir, tokenizer, model)
    return model, tokenizer, seq2seq


def check_vocab(where, tokenizer, model) -> None:
    embeddings = model.get_input_embeddings().num_embeddings
    if len(tokenizer) > embeddings or tokenizer.eos_token_id is None:
        raise TestbedError(f"{where}: tokenizer has {len(tokenizer)} tokens (eos {tokenizer.eos_token_id}) but the "
                           f"model embeds {embeddings}; the tokenizer does not belong to this model")


def select_train(fmt: Formatter, task: TranslationTask, size: int, world_seed: int) -> list[Encoded]:
    """The first pairs of the train split whose tokens reach `size`."""
    want = 64
    while True:
        pairs = checked_pairs(task, "train", want, world_seed)
        encoded, tokens = [], 0
        for src, tgt in pairs:
            item = fmt.encode(src, tgt)
            encoded.append(item)
            tokens += len(item.prompt) + len(item.target)
            if tokens >= size:
                return encoded
        if len(pairs) < want:
            raise TestbedError(f"task {task.corpus!r}: the train split holds {tokens} tokens < --size {size}")
        want = max(2 * want, int(1.2 * want * size / max(tokens, 1)))


def finetune_checkpoint(model, tokenizer, seq2seq: bool, task: TranslationTask, size: int, protocol: Protocol,
                        world_seed: int, out_dir: Path) -> dict:
    """Finetune one model (weights are not modified: copies are trained) and score it; see the module doc."""
    start = time.perf_counter()
    fmt = Formatter(tokenizer, seq2seq, protocol.max_len)
    train = select_train(fmt, task, size, world_seed)
    valid = [fmt.encode(s, t) for s, t in checked_pairs(task, "valid", protocol.n_valid, world_seed)]
    test_pairs = checked_pairs(task, "test", protocol.n_test, world_seed)
    test = [fmt.encode(s, t) for s, t in test_pairs]
    grid, best = [], None
    for lr in protocol.lrs:
        torch.manual_seed(protocol.seed)
        candidate = copy.deepcopy(model)
        try:
            losses = finetune(candidate, fmt, train, protocol, lr)
            valid_ce = reference_ce(candidate, fmt, valid, protocol.decode_batch)[0]
        except TestbedError as err:  # a diverged LR loses the grid, it does not fail the combo
            grid.append({"lr": lr, "valid_cross_entropy": None, "error": str(err)})
            continue
        grid.append({"lr": lr, "valid_cross_entropy": valid_ce, "train_loss_last": losses[-1]})
        if best is None or valid_ce < best[0]:
            best = (valid_ce, lr, candidate)
    if best is None:
        raise TestbedError(f"finetuning diverged at every LR of {protocol.lrs}")
    _, lr, tuned = best
    ce, ce_per_sentence = reference_ce(tuned, fmt, test, protocol.decode_batch)
    hypotheses = greedy_decode(tuned, fmt, [e.prompt for e in test], protocol)
    references = [t for _, t in test_pairs]
    sources = [s for s, _ in test_pairs]
    metrics = score(hypotheses, references, sources, protocol.comet_model)
    metrics["cross_entropy"] = (ce, stderr(ce_per_sentence))
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text(out_dir / "predictions.jsonl", "".join(
        json.dumps({"src": s, "ref": r, "hyp": h}, ensure_ascii=False) + "\n"
        for s, r, h in zip(sources, references, hypotheses, strict=True)))
    summary = {"task": task.name, "corpus": task.corpus, "finetune_size": size, "lr": lr, "lr_grid": grid,
               "train_pairs": len(train), "train_tokens": sum(len(e.prompt) + len(e.target) for e in train),
               "test_pairs": len(test), "metrics": {k: v for k, (v, _) in metrics.items()},
               "protocol": asdict(protocol), "wall_s": round(time.perf_counter() - start, 2)}
    write_text(out_dir / "summary.json", json.dumps(summary, indent=1) + "\n")
    return metrics


# --- a run --------------------------------------------------------------------------------------------

@dataclass
class FinetuneReport:
    written: int = 0
    done: list[tuple[int, int]] = field(default_factory=list)  # (step, size) finetuned by this call
    failed: list[dict] = field(default_factory=list)


def parse_sizes(sizes: Iterable[int | str]) -> list[int]:
    out = []
    for size in sizes:
        try:
            value = int(float(size))
        except (TypeError, ValueError):
            value = 0
        if value <= 0:
            raise TestbedError(f"--size {size!r}: a finetuning-set size is a positive number of tokens")
        out.append(value)
    return out


def finetune_run(run_dir: Path, task: str, sizes: Iterable[int | str], steps: str = "final",
                 protocol: str | Path | Protocol = "finetune",
                 log: Callable[[str], None] | None = None) -> FinetuneReport:
    """Finetune the run's checkpoints (the final one, or all) plus the baseline on `task` at each size."""
    from testbed.ladder import plan_run
    from testbed.results import append_rows, read_rows

    run_dir = Path(run_dir)
    available, selected = RunDir(run_dir).exported_steps(steps)
    translation = resolve_task(task)
    sizes = parse_sizes(sizes)
    protocol = protocol if isinstance(protocol, Protocol) else load_protocol(protocol)
    config = load_run_config(run_dir / "config.yaml")
    plan = plan_run(config)
    alignment = mixture_alignment(config.data.mixture, translation.src, translation.dst)
    for split, n in (("valid", protocol.n_valid), ("test", protocol.n_test)):  # bad data stops before any work
        checked_pairs(translation, split, n, config.data.world_seed)
    done = {(r["step"], r["finetune_size"], r["harness"]) for r in read_rows(run_dir)
            if r["kind"] == "translation" and r["name"] == translation.name}
    if protocol.baseline:
        selected = [BASELINE_STEP, *[s for s in selected if s != BASELINE_STEP]]
    failures_path = run_dir / FAILURES_FILE
    failures = json.loads(failures_path.read_text()) if failures_path.is_file() else {}
    report = FinetuneReport()
    for step in selected:
        todo = [size for size in sizes if (step, size, protocol.harness) not in done]
        if not todo:
            continue
        if step == BASELINE_STEP and step not in available:
            model, tokenizer, seq2seq = initial_model(run_dir, available[-1], config.train.seed)
        else:
            model, tokenizer, seq2seq = load_checkpoint(step_dir(run_dir / "hf", step))
        base = RunDir.base_row(config, plan, step)
        if step == BASELINE_STEP:
            base["final"] = False
        for size in todo:
            key = f"{translation.name}/size_{size}/step_{step:06d}/{protocol.name}"
            out_dir = run_dir / "finetune" / translation.name / f"size_{size}" / f"step_{step:06d}"
            if log:
                log(f"{run_dir.name}: finetune {translation.name} size {size} from step {step}")
            try:
                metrics = finetune_checkpoint(model, tokenizer, seq2seq, translation, size, protocol,
                                              config.data.world_seed, out_dir)
            except Exception as err:  # recorded; the other combinations still run
                if isinstance(err, TestbedError) and ("empty" in str(err) or "no pairs" in str(err)
                                                      or "tokens <" in str(err)):
                    raise  # bad input shared by every combination: stop with one line
                record = {"task": translation.name, "finetune_size": size, "step": step, "protocol": protocol.name,
                          "reason": str(err).splitlines()[0] if isinstance(err, TestbedError) else one_line(err),
                          "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
                failures[key] = record
                report.failed.append(record)
                write_text(failures_path, json.dumps(failures, indent=1, sort_keys=True) + "\n")
                continue
            rows = [dict(base, kind="translation", name=translation.name, metric=metric, value=float(value),
                         stderr=None if err is None else float(err), finetune_size=size, alignment=alignment,
                         harness=protocol.harness)
                    for metric, (value, err) in metrics.items()]
            append_rows(run_dir, rows)
            report.written += len(rows)
            report.done.append((step, size))
            if failures.pop(key, None) is not None:
                write_text(failures_path, json.dumps(failures, indent=1, sort_keys=True) + "\n")
    return report


def initial_model(run_dir: Path, like_step: int, seed: int):
    """The run's initialisation: the checkpoint's architecture built from the run's seed (as train does)."""
    from transformers import AutoConfig, AutoTokenizer

    from testbed.evaluate.harness import check_checkpoint
    from testbed.models import build_model

    hf_dir = step_dir(run_dir / "hf", like_step)
    check_checkpoint(hf_dir)
    model_config = AutoConfig.from_pretrained(hf_dir)
    model = build_model(model_config, seed=seed)
    tokenizer = AutoTokenizer.from_pretrained(hf_dir)
    check_vocab(hf_dir, tokenizer, model)
    return model.float().eval(), tokenizer, bool(model_config.is_encoder_decoder)


def finetune_sweep(sweep_path: str | Path, overrides: list[str] = (), tasks: list[str] | None = None,
                   sizes: list[int | str] | None = None, steps: str | None = None,
                   log: Callable[[str], None] | None = None) -> dict[str, FinetuneReport]:
    """Finetune every trained (DONE) run of a sweep as its `finetune:` section says; run dir -> report.

    Runs not trained yet are reported as skipped (train them with `testbed sweep run` first); a run whose
    finetuning fails is recorded and the others still run.
    """
    from testbed.config import load_sweep_config
    from testbed.sweep.expand import expand

    sweep = load_sweep_config(sweep_path, list(overrides))
    spec = sweep.finetune
    tasks = list(tasks or spec.tasks)
    sizes = list(sizes or spec.sizes)
    if not tasks or not sizes:
        raise TestbedError(f"{sweep_path}: finetune.tasks and finetune.sizes are needed (or --task and --size)")
    for task in tasks:
        resolve_task(task)
    protocol = load_protocol(spec.protocol)
    reports: dict[str, FinetuneReport] = {}
    for config in expand(sweep, str(sweep_path)):
        run_dir = RunDir.of(config).path
        if not RunDir(run_dir).done():
            if log:
                log(f"{run_dir.name}: not trained yet; skipped")
            continue
        report = reports.setdefault(str(run_dir), FinetuneReport())
        for task in tasks:
            try:
                one = finetune_run(run_dir, task, sizes, steps or spec.steps, protocol, log)
            except TestbedError as err:
                report.failed.append({"task": task, "reason": str(err)})
                continue
            report.written += one.written
            report.done += one.done
            report.failed += one.failed
    return reports
