"""Translation finetuning of pretraining checkpoints: Isik et al.'s protocol (arXiv 2402.04177),
scaled down.

For each selected checkpoint of a run, each finetuning-set size (tokens) and each finetuning seed of the protocol,
`run.finetune_run`
1. draws the finetuning set: the first pairs of the task's train split whose tokens (source + target,
   as the checkpoint's tokenizer counts them) reach the size (`data`);
2. finetunes all weights with AdamW at a constant LR, a fixed number of steps (`loop`). The protocol's first
   seed tries every LR of its grid and keeps the one with the lowest cross-entropy on a validation split; the
   other seeds reuse that LR (|lrs| + |seeds| - 1 finetunes per checkpoint and size, not |lrs| x |seeds|).
   A seed sets the order of the finetuning batches and any dropout, nothing else;
3. evaluates that model on a held-out test split: greedy decoding (at most `max_new_tokens`) scored with
   BLEU and chrF (sacrebleu) and ROUGE-L (rouge-score), the cross-entropy of the references (nats per
   target token, teacher-forced), and COMET when the protocol names a local COMET model (`metrics`);
4. writes the predictions and a summary under `<run>/finetune/<task>/size_<N>/step_<S>/seed_<K>/`, then one row
   per metric: kind="translation", name=<the task's corpus>, finetune_size, finetune_seed, alignment (the run's
   mixture for this pair, `alignment`), harness="testbed-finetune/<protocol>", step = the pretraining
   checkpoint's step;
5. with the baseline, adds a `bleu_gain` row per checkpoint, size and seed: its BLEU minus the baseline's (same
   size and seed, same test sentences), stderr and p_value from a paired bootstrap (`significance`).

The no-pretraining baseline is the same model at its initialisation (the run's own seed: the weights the
pretraining started from, whatever the finetuning seed), finetuned the same way, first; its rows have step 0
and tokens 0.

Formats: T5 maps source -> target (encoder input `<src><eos>`, labels `<tgt><eos>`); the decoder reads
`<src> = <tgt><eos>` with the loss on ` <tgt><eos>` only, and decodes after `<src> =`.

Already-finetuned (step, task, size, seed, protocol) combinations are skipped, so adding a seed adds only its
finetunes, and a missing bleu_gain row is added from the stored predictions; a failed combination is recorded
in `<run>/finetune_failures.json` and the others still run. The protocol is `protocol.Protocol`
(configs/eval/finetune*.yaml); the runs of a sweep are finetuned by the sweep package (`finetune_sweep`).
"""
