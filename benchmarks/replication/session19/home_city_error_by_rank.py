"""home_city's error by the rank of the person asked about, per run (final checkpoint), on the z15 suite's items:
where the mean error of the targets sits (learnable people vs people the corpus hardly mentions)."""
import glob, json, sys
from collections import defaultdict
from testbed.data.synthetic_world import build_world

world = build_world(0, persons=30000, zipf=1.5)
rank_of = {p.name: r for r, p in enumerate(world.persons)}
total = world.person_cdf[-1]
BANDS = [(0, 100), (100, 1000), (1000, 3000), (3000, 30000)]
runs = sys.argv[1]
print("talk share of each band:", " ".join(f"{lo}-{hi}: {(world.person_cdf[hi-1]-(world.person_cdf[lo-1] if lo else 0))/total:.4f}" for lo, hi in BANDS))
print(f"{'run':34s} " + " ".join(f"{f'{lo}-{hi}':>14s}" for lo, hi in BANDS) + "   all")
for d in sorted(glob.glob(f"{runs}/dec-*")):
    steps = sorted(glob.glob(f"{d}/eval_samples/step_*"))
    if not steps:
        continue
    f = f"{steps[-1]}/home_city-0shot.samples.jsonl"
    err = defaultdict(list)
    for line in open(f):
        s = json.loads(line)
        r = rank_of[s["doc"]["query"].split(" lives in")[0]]
        band = next(b for b in BANDS if b[0] <= r < b[1])
        err[band].append(1 - s["acc"])
    n = sum(len(v) for v in err.values())
    cells = " ".join(f"{sum(err[b])/len(err[b]):6.3f} (n={len(err[b]):3d})" for b in BANDS)
    print(f"{d.split('/')[-1]:34s} {cells}   {sum(sum(v) for v in err.values())/n:.3f}")
