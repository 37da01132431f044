"""Translation finetuning of pretraining checkpoints: Isik et al.'s protocol (arXiv 2402.04177),
scaled down.

For each selected checkpoint of a run and each finetuning-set size (tokens), `run.finetune_run`
1. draws the finetuning set: the first pairs of the task's train split whose tokens (source + target,
   as the checkpoint's tokenizer counts them) reach the size (`data`);
2. finetunes all weights with AdamW at a constant LR, a fixed number of steps, once per LR of the
   protocol's grid, and keeps the LR with the lowest cross-entropy on a validation split (`loop`);
3. evaluates that model on a held-out test split: greedy decoding (at most `max_new_tokens`) scored with
   BLEU and chrF (sacrebleu) and ROUGE-L (rouge-score), the cross-entropy of the references (nats per
   target token, teacher-forced), and COMET when the protocol names a local COMET model (`metrics`);
4. writes the predictions and a summary under `<run>/finetune/<task>/size_<N>/step_<S>/`, then one row
   per metric: kind="translation", name="<src>-<dst>", finetune_size, alignment (the run's mixture for
   this pair, `alignment`), harness="testbed-finetune/<protocol>", step = the pretraining checkpoint's step.

The no-pretraining baseline is the same model at its initialisation (the run's own seed: the weights the
pretraining started from), finetuned the same way; its rows have step 0 and tokens 0.

Formats: T5 maps source -> target (encoder input `<src><eos>`, labels `<tgt><eos>`); the decoder reads
`<src> = <tgt><eos>` with the loss on ` <tgt><eos>` only, and decodes after `<src> =`.

Already-finetuned (step, task, size, protocol) combinations are skipped; a failed one is recorded in
`<run>/finetune_failures.json` and the others still run. The protocol is `protocol.Protocol`
(configs/eval/finetune*.yaml); the runs of a sweep are finetuned by the sweep package (`finetune_sweep`).
"""
