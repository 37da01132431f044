"""Join copy B's final-checkpoint rows and outputs (size 500000) to copy A, which holds the baseline's."""
import json, shutil, sys
from pathlib import Path
A = Path("/work/probe20/ep500k/dec-s2-syn_en_fr-m40-seed0")
B = Path("/work/probe20/ep500k_final/dec-s2-syn_en_fr-m40-seed0")
sub = Path("finetune/syn_en-syn_fr/size_500000/step_000690")
a_rows = [json.loads(l) for l in (A / "rows.jsonl").read_text().splitlines() if l.strip()]
assert not any(r.get("finetune_size") == 500000 and r["step"] == 690 for r in a_rows), "A already has final rows"
b_new = [r for r in (json.loads(l) for l in (B / "rows.jsonl").read_text().splitlines() if l.strip())
         if r.get("kind") == "translation" and r.get("finetune_size") == 500000 and r["step"] == 690]
print(len(b_new), "rows from B;", sum(r.get("finetune_size") == 500000 for r in a_rows), "500k rows in A")
assert b_new
shutil.rmtree(A / sub, ignore_errors=True)
shutil.copytree(B / sub, A / sub)
with open(A / "rows.jsonl", "a") as f:
    for r in b_new:
        f.write(json.dumps(r, sort_keys=True) + "\n")
