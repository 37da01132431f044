"""Session 14's results table with the entropy_floor column its syn_en rows would carry now.

Those runs were trained before val_loss rows carried the validation text's entropy. Their validation
text is the syn_en valid stream's first 32,769 tokens (data.val_tokens 32768 at seq_len 64: 512 windows)
under the `synthetic` tokenizer of 512 tokens, world seed 0, as every run of overtrain_micro.yaml. This
computes its entropy as training now does (readers.SyntheticKind.entropy) and writes the table with it.

    .venv/bin/python benchmarks/replication/session18/add_entropy_floor.py IN.parquet OUT.parquet
"""

import sys

from analysis.schema import read_table, write_table
from testbed.data import readers
from testbed.data.sources import known_sources
from testbed.data.tokenizer import load_tokenizer

VOCAB, WORLD_SEED, N_TOKENS = 512, 0, 32768 // 64 * 64 + 1

table = read_table(sys.argv[1])
tokenizer = load_tokenizer(VOCAB, WORLD_SEED)
sources = known_sources()
for name in ("syn_en",):
    floor = readers.SYNTHETIC.entropy(sources[name], "valid", WORLD_SEED, tokenizer, N_TOKENS)
    rows = (table["kind"] == "val_loss") & (table["name"] == name)
    table.loc[rows, "entropy_floor"] = floor
    print(f"{name}: {floor:.6f} nats per token on {int(rows.sum())} val_loss rows")
write_table(table, sys.argv[2])
