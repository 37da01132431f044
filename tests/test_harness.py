"""lm-eval in-process on tiny real checkpoints: its numbers equal a direct computation from the model."""

from __future__ import annotations

import json
import math
import random
import shutil
from pathlib import Path

import pytest
import torch
import transformers

from testbed.checkpoint import save_hf
from testbed.errors import TestbedError
from testbed.evaluate import harness
from testbed.evaluate.harness import evaluate_checkpoint, load_lm, p_correct, task_managers
from testbed.evaluate.tasks import check_mc_item, write_mc_task

OFFLINE = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")
THINGS = ["apple", "sky", "grass", "sun", "snow", "coal", "rose", "sea", "leaf", "lemon", "cherry", "cloud"]
COLORS = ["red", "blue", "green", "yellow", "white", "black"]
UNSEEN = ["pebble", "feather", "brick", "ink", "pearl", "olive"]  # in the task, never in training
WORLD = {thing: COLORS[i % len(COLORS)] for i, thing in enumerate(THINGS + UNSEEN)}


def read_mc_items(jsonl: Path) -> list[dict]:
    """The items of a task jsonl, each checked as the harness checks it."""
    lines = jsonl.read_text(encoding="utf-8").splitlines()
    return [check_mc_item(json.loads(line), f"{jsonl}:{n}") for n, line in enumerate(lines, 1) if line.strip()]


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    for name in OFFLINE:
        monkeypatch.setenv(name, "1")


def corpus(rng: random.Random, n: int) -> list[str]:
    lines = []
    for _ in range(n):
        thing = rng.choice(THINGS)
        lines.append(f"the color of {thing} is {WORLD[thing]}.")
    return lines


def make_tokenizer(lines: list[str]):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=320,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(lines, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>")


def train(model, tokenizer, lines: list[str], steps: int, seq2seq: bool) -> None:
    torch.manual_seed(0)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    eos = tokenizer.eos_token_id
    model.train()
    for step in range(steps):
        batch = lines[(step * 16) % len(lines) :][:16]
        if seq2seq:  # "the color of X is" -> " Y."
            src = [tokenizer(line.rsplit(" ", 1)[0])["input_ids"] for line in batch]
            tgt = [tokenizer(" " + line.rsplit(" ", 1)[1])["input_ids"] for line in batch]
            enc, enc_mask = pad(src, eos)
            labels, _ = pad(tgt, -100)
            loss = model(input_ids=enc, attention_mask=enc_mask, labels=labels).loss
        else:
            ids, mask = pad([tokenizer(line)["input_ids"] + [eos] for line in batch], eos)
            loss = model(input_ids=ids, attention_mask=mask, labels=ids.masked_fill(mask == 0, -100)).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    model.eval()


def pad(seqs: list[list[int]], value: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(map(len, seqs))
    ids = torch.tensor([s + [value] * (width - len(s)) for s in seqs])
    mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs])
    return ids, mask


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A tokenizer, a trained tiny Llama and a trained tiny T5 saved like the trainer saves them, and a task."""
    from testbed.models import build_model, decoder_config, t5_config

    # Models this small run no faster on 2 threads, and 2 threads per process on 2 busy cores (pytest -n 2,
    # other jobs) slow training 10-40x through oversubscription: one thread while this module runs.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("harness")
    rng = random.Random(0)
    lines = corpus(rng, 400)
    tokenizer = make_tokenizer(lines)
    # The project's own configs (EOS is id 0 in this tokenizer, as in testbed's)
    llama = build_model(decoder_config(32, 2, 4, len(tokenizer), 64), seed=0)
    train(llama, tokenizer, lines, steps=80, seq2seq=False)
    t5 = build_model(t5_config(32, 2, 4, len(tokenizer), d_ff=64), seed=0)
    train(t5, tokenizer, lines, steps=30, seq2seq=True)  # need not be good, only fixed
    t5_tied = build_model(t5_config(32, 2, 4, len(tokenizer), d_ff=64, tied=True), seed=0)  # the original T5's head
    train(t5_tied, tokenizer, lines, steps=30, seq2seq=True)
    models = (("llama", llama), ("t5", t5), ("t5_tied", t5_tied))
    dirs = {name: save_hf(root / name / "hf", 80, model, tokenizer) for name, model in models}
    items = []
    for i in range(48):  # 4-way choices, gold at varying positions, some choices of different lengths
        thing = (THINGS + UNSEEN)[i % (len(THINGS) + len(UNSEEN))]
        wrong = [c for c in COLORS if c != WORLD[thing]]
        choices = rng.sample(wrong, 3)
        gold = rng.randrange(4)
        choices.insert(gold, WORLD[thing])
        items.append({"query": f"the color of {thing} is", "choices": choices, "gold": gold})
    tasks_dir = root / "tasks"
    write_mc_task("color_mc", items, tasks_dir)
    yield {"root": root, "tasks_dir": tasks_dir, "items": items, **dirs}
    torch.set_num_threads(threads)


def direct_scores(hf_dir: Path, items: list[dict]) -> dict[str, float]:
    """acc, acc_norm and p_correct from our own forward passes: sum log p(' ' + choice | query)."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(hf_dir)
    seq2seq = AutoConfig.from_pretrained(hf_dir).is_encoder_decoder
    model = (AutoModelForSeq2SeqLM if seq2seq else AutoModelForCausalLM).from_pretrained(hf_dir).eval()
    acc = acc_norm = p_sum = 0.0
    for item in items:  # one forward pass per item: its choices right-padded in one batch
        ctx = tokenizer(item["query"])["input_ids"]
        conts = [tokenizer(" " + c, add_special_tokens=False)["input_ids"] for c in item["choices"]]
        with torch.no_grad():
            if seq2seq:
                start = model.config.decoder_start_token_id
                dec, _ = pad([[start] + cont[:-1] for cont in conts], start)
                enc = torch.tensor([ctx] * len(conts))
                logits = model(input_ids=enc, decoder_input_ids=dec).logits
                offset = 0
            else:
                ids, _ = pad([ctx + cont for cont in conts], 0)
                logits = model(input_ids=ids).logits
                offset = len(ctx) - 1
        logprobs = torch.log_softmax(logits.double(), dim=-1)
        lls = [
            float(logprobs[i, offset + torch.arange(len(cont)), torch.tensor(cont)].sum())
            for i, cont in enumerate(conts)
        ]
        gold = item["gold"]
        acc += max(range(len(lls)), key=lls.__getitem__) == gold
        normed = [ll / len(choice) for ll, choice in zip(lls, item["choices"], strict=True)]
        acc_norm += max(range(len(lls)), key=normed.__getitem__) == gold
        top = max(lls)
        p_sum += math.exp(lls[gold] - top) / sum(math.exp(ll - top) for ll in lls)
    n = len(items)
    return {"acc": acc / n, "acc_norm": acc_norm / n, "p_correct": p_sum / n}


@pytest.mark.parametrize("arch", ["llama", "t5"])
def test_lm_eval_equals_direct_loglikelihoods(world, arch, tmp_path):
    rows = evaluate_checkpoint(
        world[arch], world["tasks_dir"], ["color_mc"], batch_size=8, samples_dir=tmp_path / "samples"
    )
    got = {r["metric"]: r for r in rows}
    assert sorted(got) == ["acc", "acc_norm", "p_correct"]
    want = direct_scores(world[arch], world["items"])
    assert got["acc"]["value"] == pytest.approx(want["acc"], abs=1e-9)
    assert got["acc_norm"]["value"] == pytest.approx(want["acc_norm"], abs=1e-9)
    assert got["p_correct"]["value"] == pytest.approx(want["p_correct"], abs=1e-5)
    for r in rows:
        assert r["name"] == "color_mc" and r["num_fewshot"] == 0
        assert set(r) == {"name", "metric", "value", "stderr", "num_fewshot", "harness", "chance"}
        choices = [len(item["choices"]) for item in world["items"]]
        assert r["chance"] == pytest.approx(sum(1 / c for c in choices) / len(choices))
        assert r["harness"].startswith("lm_eval==0.4")
    n, acc = len(world["items"]), want["acc"]
    assert got["acc"]["stderr"] == pytest.approx(math.sqrt(acc * (1 - acc) / (n - 1)))
    assert got["p_correct"]["stderr"] > 0
    if arch == "llama":  # knows the trained facts, guesses on the unseen ones: between chance and 1
        assert 0.5 < acc < 1 and 0.4 < want["p_correct"] < 1


def test_samples_written_one_line_per_item(world, tmp_path):
    samples_dir = tmp_path / "samples"
    rows = evaluate_checkpoint(
        world["llama"], world["tasks_dir"], ["color_mc"], batch_size=4, seed=3, samples_dir=samples_dir
    )
    lines = (samples_dir / "color_mc-0shot.samples.jsonl").read_text().splitlines()
    assert len(lines) == len(world["items"])
    samples = [json.loads(line) for line in lines]
    assert [s["doc"] for s in sorted(samples, key=lambda s: s["doc_id"])] == world["items"]
    p_rows = [r["value"] for r in rows if r["metric"] == "p_correct"]
    assert p_rows == [pytest.approx(sum(s["p_correct"] for s in samples) / len(samples))]
    assert all(p_correct(s) == pytest.approx(s["p_correct"]) for s in samples)
    meta = json.loads((samples_dir / "color_mc-0shot.json").read_text())
    assert meta["batch_size"] == 4 and meta["seed"] == 3 and meta["backend"] == "causal"
    assert meta["harness"] == rows[0]["harness"] and meta["n_samples"] == len(world["items"])
    assert not list(samples_dir.glob("*.tmp"))


def test_the_environment_is_recorded_once_per_process(world, tmp_path, monkeypatch):
    """lm-eval's environment record (torch's collect_env, which runs `pip list`) is taken once, not per task,
    and every task's results still carry it."""
    import torch.utils.collect_env as collect_env

    calls = []
    real = collect_env.get_pretty_env_info
    monkeypatch.setattr(collect_env, "get_pretty_env_info", lambda: calls.append(1) or real())
    harness._environment.cache_clear()
    for task in ("color_mc", "color_mc_2"):
        write_mc_task(task, world["items"], tmp_path / "tasks")
    samples_dir = tmp_path / "samples"
    evaluate_checkpoint(world["llama"], tmp_path / "tasks", ["color_mc", "color_mc_2"], samples_dir=samples_dir)
    assert len(calls) == 1
    for task in ("color_mc", "color_mc_2"):
        meta = json.loads((samples_dir / f"{task}-0shot.json").read_text())
        assert meta["transformers_version"] == transformers.__version__


def test_fewshot_and_reused_model(world):
    lm = load_lm(world["llama"], batch_size=8)
    first = evaluate_checkpoint(world["llama"], world["tasks_dir"], ["color_mc"], num_fewshot=2, lm=lm)
    again = evaluate_checkpoint(world["llama"], world["tasks_dir"], ["color_mc"], num_fewshot=2, lm=lm)
    assert {r["num_fewshot"] for r in first} == {2}
    assert first == again  # same seed, same few-shot examples, same numbers
    with pytest.raises(TestbedError, match="t5.*loaded from"):
        evaluate_checkpoint(world["t5"], world["tasks_dir"], ["color_mc"], lm=lm)


def test_t5_v11_head_stays_untied_under_lm_eval(world):
    # HFLM calls tie_weights() after loading, which tied the head to the embedding (transformers 5 declares
    # every T5 tied): the direct comparison above then failed, acc 0.25 against 0.79.
    model = load_lm(world["t5"], batch_size=8).model
    assert model.lm_head.weight is not model.shared.weight
    assert not torch.equal(model.lm_head.weight, model.shared.weight)
    from testbed.translation.loop import load_checkpoint

    finetuned, _, _ = load_checkpoint(world["t5"])  # what finetuning starts from: untied, and it stays so
    finetuned.tie_weights()
    assert torch.equal(finetuned.lm_head.weight, model.lm_head.weight)
    from testbed.models import build_model, t5_config

    built = build_model(t5_config(32, 2, 4, 320, d_ff=64), seed=0)  # as training builds it
    built.tie_weights()
    assert built.lm_head.weight is not built.shared.weight
    assert built.encoder.embed_tokens.weight is built.shared.weight  # the embeddings stay tied


def test_quiet_keeps_lm_evals_progress_bars_out(world, monkeypatch, capsys):
    lm = load_lm(world["llama"], batch_size=8)
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    loud = evaluate_checkpoint(world["llama"], world["tasks_dir"], ["color_mc"], lm=lm)
    assert "loglikelihood requests" in capsys.readouterr().err  # lm-eval's own bar
    monkeypatch.setenv("TQDM_DISABLE", "1")  # what `--quiet` sets
    quiet = evaluate_checkpoint(world["llama"], world["tasks_dir"], ["color_mc"], lm=lm)
    assert "loglikelihood requests" not in capsys.readouterr().err and quiet == loud


def test_bad_inputs_name_the_path(world, tmp_path, monkeypatch):
    from lm_eval.tasks import TaskManager

    # An unknown name is looked up among lm-eval's built-in tasks last; an empty index stands in for
    # them here, since building the real one takes 7-12 s (test_builtin_task_names_resolve does that).
    empty = TaskManager(include_path=str(tmp_path), include_defaults=False)
    monkeypatch.setattr(harness, "builtin_task_manager", lambda: empty)
    tasks_dir = world["tasks_dir"]
    missing = tmp_path / "nope"
    with pytest.raises(TestbedError, match="nope.*does not exist"):
        evaluate_checkpoint(missing, tasks_dir, ["color_mc"])
    no_config = tmp_path / "no_config"
    no_config.mkdir()
    with pytest.raises(TestbedError, match=r"no_config/config\.json"):
        evaluate_checkpoint(no_config, tasks_dir, ["color_mc"])
    no_tok = tmp_path / "no_tok"
    shutil.copytree(world["llama"], no_tok)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (no_tok / name).unlink(missing_ok=True)
    with pytest.raises(TestbedError, match="no_tok.*no tokenizer"):
        evaluate_checkpoint(no_tok, tasks_dir, ["color_mc"])
    with pytest.raises(TestbedError, match="unknown task 'no_such_task'"):
        evaluate_checkpoint(world["llama"], tasks_dir, ["no_such_task"])
    with pytest.raises(TestbedError, match="tasks_missing.*does not exist"):
        evaluate_checkpoint(world["llama"], tmp_path / "tasks_missing", ["color_mc"])
    items = [{"query": "q", "choices": ["a", "b"], "gold": 0}]
    write_mc_task("emptied", items, tmp_path / "tasks")
    (tmp_path / "tasks" / "emptied.jsonl").write_text("")
    with pytest.raises(TestbedError, match=r"task 'emptied'.*emptied\.jsonl is empty"):
        evaluate_checkpoint(world["llama"], tmp_path / "tasks", ["emptied"])
    write_mc_task("deleted", items, tmp_path / "tasks")
    (tmp_path / "tasks" / "deleted.jsonl").unlink()
    with pytest.raises(TestbedError, match=r"task 'deleted'.*deleted\.jsonl does not exist"):
        evaluate_checkpoint(world["llama"], tmp_path / "tasks", ["deleted"])
    wrong_tok = tmp_path / "wrong_tok"
    shutil.copytree(world["llama"], wrong_tok)
    config = json.loads((wrong_tok / "config.json").read_text())
    config["vocab_size"] = 50
    (wrong_tok / "config.json").write_text(json.dumps(config))
    with pytest.raises(TestbedError, match="wrong_tok"):
        load_lm(wrong_tok)


@pytest.mark.slow
def test_builtin_task_names_resolve(world):
    """A name not in the YAML dir goes to lm-eval's built-in index (hellaswag: for users with network)."""
    managers = task_managers(world["tasks_dir"], ["color_mc", "hellaswag"])
    assert managers["hellaswag"] is harness.builtin_task_manager()
    assert "color_mc" not in managers["hellaswag"].all_tasks  # the local one came from the local index
    assert "color_mc" in managers["color_mc"].all_tasks


def test_write_mc_task_files_and_validation(tmp_path):
    items = [{"query": "q 'one' \"two\"", "choices": ["a b", "c"], "gold": 1}]
    yaml_path = write_mc_task("tiny.v1", items, tmp_path / "t")
    assert yaml_path == (tmp_path / "t" / "tiny.v1.yaml").resolve()
    import yaml

    spec = yaml.safe_load(yaml_path.read_text())
    assert spec["task"] == "tiny.v1" and spec["output_type"] == "multiple_choice"
    jsonl = Path(spec["dataset_kwargs"]["data_files"]["test"])
    assert jsonl.is_absolute() and read_mc_items(jsonl) == items
    for bad, pattern in [
        ({"query": "q", "choices": ["a"], "gold": 0}, "choices"),
        ({"query": "q", "choices": ["a", "b"], "gold": 2}, "gold"),
        ({"query": "q ", "choices": ["a", "b"], "gold": 0}, "whitespace"),
        ({"choices": ["a", "b"], "gold": 0}, "query"),
    ]:
        with pytest.raises(TestbedError, match=f"task bad, item 0: '{pattern}'|{pattern}"):
            write_mc_task("bad", [bad], tmp_path / "t")
    with pytest.raises(TestbedError, match="task name"):
        write_mc_task("bad/name", items, tmp_path / "t")
    assert not (tmp_path / "t" / "bad.yaml").exists()


# --- stock readers: transformers' Auto classes and lm-eval's HFLM, with nothing of testbed's ----------------------

REQUESTS = [("the color of sky is", " blue."), ("the color of snow is", " white."), ("the color of ink", " is red.")]


def batch_loss(model, tokenizer, seq2seq: bool) -> float:
    """Mean cross-entropy of REQUESTS' continuations, teacher-forced."""
    ctx = [tokenizer(c)["input_ids"] for c, _ in REQUESTS]
    cont = [tokenizer(x, add_special_tokens=False)["input_ids"] for _, x in REQUESTS]
    with torch.no_grad():
        if seq2seq:
            enc, mask = pad(ctx, 0)
            labels, _ = pad(cont, -100)
            return float(model(input_ids=enc, attention_mask=mask, labels=labels).loss)
        ids, mask = pad([a + b for a, b in zip(ctx, cont, strict=True)], 0)
        labels = torch.tensor(
            [[-100] * len(a) + b + [-100] * (ids.shape[1] - len(a) - len(b)) for a, b in zip(ctx, cont, strict=True)]
        )
        return float(model(input_ids=ids, attention_mask=mask, labels=labels).loss)


@pytest.mark.parametrize("arch", ["llama", "t5", "t5_tied"])
def test_stock_transformers_reads_what_testbed_reads(world, arch):
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

    from testbed.translation.loop import load_checkpoint

    hf_dir = world[arch]
    saved = json.loads((hf_dir / "config.json").read_text())
    tied = arch == "t5_tied"
    assert saved["tie_word_embeddings"] is tied  # as the checkpoint is: the head is the embedding only when tied
    ours, tokenizer, seq2seq = load_checkpoint(hf_dir)
    stock = (AutoModelForSeq2SeqLM if seq2seq else AutoModelForCausalLM).from_pretrained(hf_dir).eval()
    assert torch.equal(stock.get_output_embeddings().weight, stock.get_input_embeddings().weight) is tied
    want = batch_loss(ours.eval(), tokenizer, seq2seq)
    assert batch_loss(stock, AutoTokenizer.from_pretrained(hf_dir), seq2seq) == pytest.approx(want, abs=1e-5)


def stock_hflm_xfail(arch: str):
    """transformers 5 forces tie_word_embeddings=True on every T5 config it reads (huggingface/transformers
    #42815; T5Config.__post_init__), and HFLM calls tie_weights() after loading: the head becomes the
    embedding, for Google's v1.1 checkpoints as for ours, whatever config.json says. testbed's own loader
    (load_lm) unties it again; a stock HFLM cannot, until transformers or lm-eval changes."""
    import transformers

    forced = arch == "t5" and int(transformers.__version__.split(".")[0]) >= 5
    return pytest.mark.xfail(forced, reason="transformers 5 ties every T5 head on tie_weights()", strict=True)


@pytest.mark.parametrize(
    "arch", [pytest.param("llama"), pytest.param("t5", marks=stock_hflm_xfail("t5")), pytest.param("t5_tied")]
)
def test_stock_hflm_reads_what_testbed_reads(world, arch):
    """Decoders and tied T5s (a ladder's tie_embeddings: true) exactly; an untied T5 v1.1 not yet (see above)."""
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    hf_dir = world[arch]
    backend = "seq2seq" if arch.startswith("t5") else "causal"
    stock = HFLM(pretrained=str(hf_dir), backend=backend, batch_size=4, device="cpu", dtype="float32")
    ours = load_lm(hf_dir, batch_size=4)

    def loglikelihoods(lm) -> list[float]:
        requests = [Instance("loglikelihood", {}, pair, i) for i, pair in enumerate(REQUESTS)]
        return [ll for ll, _ in lm.loglikelihood(requests, disable_tqdm=True)]

    assert loglikelihoods(stock) == pytest.approx(loglikelihoods(ours), abs=1e-5)
