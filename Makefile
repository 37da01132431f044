# testbed: `make demo` and `make test` each install what they need into .venv first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
# The CPU torch wheel that pip finds locally on the project's machines (harmless where absent).
WHEELS := $(wildcard /opt/wheels)
PIP_FLAGS := -q -c constraints.txt $(if $(WHEELS),--find-links $(WHEELS))
OFFLINE := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 WANDB_MODE=offline
SWEEP   ?= configs/sweeps/demo.yaml
BACKEND ?= local
DEMO_OUT := runs/demo
# uv installs no bytecode (pip compiled all of it; uv's --compile-bytecode would take 38 s more). Python caches
# what it compiles on first import, unless PYTHONDONTWRITEBYTECODE is set: then every process compiles torch
# anew (7 s more a process, twice as long a `make test`). So every target lets Python write its cache
# (__pycache__/, ignored by git).
unexport PYTHONDONTWRITEBYTECODE

.PHONY: install test test-fast demo sweep lint clean real-data real-text docs-data replicate replicate-translation replicate-translation-real lr-sweep

install: $(VENV)/.installed

# Reinstall only when the dependency pins or the package metadata change.
# pip brings uv (pinned in constraints.txt), and uv installs the rest: the same pinned versions in about 15 s
# where pip takes about 110 s with a warm cache (benchmarks/demo.md, "Session 13"). It writes no bytecode: see
# `unexport PYTHONDONTWRITEBYTECODE` above.
$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install $(PIP_FLAGS) uv
	$(VENV)/bin/uv pip install --python $(PY) $(PIP_FLAGS) -e '.[train,dev]'
	touch $@

# Real text offline (docs/data.md): gettext catalogs and man pages of this machine, plus the Debian
# packages manpages-{de,fr,ro} and libreoffice-l10n-{de,fr,ro} unpacked into .cache/real-root with
# apt-get download + dpkg -x (no root; skipped with a warning where apt cannot fetch). About 15 s the
# first time, under a second when up to date. Then docs_en, English prose from Debian's documentation
# packages (debs kept in .cache/docs-debs, unpacked in .cache/docs-root; docs/data.md) and its token counts:
# about 10 minutes and 300 MB of downloads the first time, under a second when up to date.
real-data: real-text docs-data

# The small real corpus alone: what the tests read (docs_en is for the replication, not the tests).
real-text: install
	$(PY) scripts/build_real_corpus.py --fetch

docs-data: install
	$(PY) scripts/build_docs_corpus.py --fetch --tokens

test: install real-text
	$(OFFLINE) $(PY) -m pytest -q -n 2 --durations=10

# The inner loop, under a minute: config, rows, structure, analysis (fits, classification); no training.
FAST_TESTS := tests/test_config.py tests/test_config_validation.py tests/test_structure.py \
	tests/test_results_rows.py tests/test_schedule.py $(wildcard tests/test_analysis_*.py)
test-fast: install
	$(OFFLINE) $(PY) -m pytest -q -n 2 -m "not slow" $(FAST_TESTS)

demo: install
	@start=$$(date +%s); \
	$(OFFLINE) $(VENV)/bin/testbed sweep run configs/sweeps/demo.yaml --quiet && \
	$(OFFLINE) $(VENV)/bin/testbed results collect $(DEMO_OUT) --out $(DEMO_OUT)/results.parquet && \
	$(OFFLINE) $(VENV)/bin/testbed analyze replicate $(DEMO_OUT)/results.parquet --params nonembed --bootstrap 200 && \
	$(OFFLINE) $(VENV)/bin/testbed analyze report $(DEMO_OUT)/results.parquet --out $(DEMO_OUT)/report \
		--protocol replicate --params nonembed --bootstrap 200 --classify-bootstrap 200 && \
	echo "demo finished in $$(( $$(date +%s) - start )) s"

# The over-training study on the cpu_uniform ladder, both corpora (docs/replication.md): resumable and
# idempotent (a second call reuses every finished run). N is counted without embeddings; the paper's fit set
# is the main analysis, the fit set with the multipliers inside its compute (u1 at M = 40 and 80, u2 at M = 40)
# the second. 80.1 minutes on 2 cores from a fresh clone, real-data included (benchmarks/replication/README.md,
# "Session 20"). Results in $(REPLICATE_OUT).
REPLICATE_OUT := runs/overtrain_micro
REPLICATE_ARGS := --params nonembed --bootstrap 200
# the tasks of configs/eval/synthetic_z15.yaml meant to be predictable (intended: predictable): the issue's
# chained-error target is their mean, on syn_en_z15; with Err(L) on every checkpoint and on the final ones alone
PREDICTABLE_TASKS := smooth long_tail home_city
replicate: install real-data
	@start=$$(date +%s); \
	$(OFFLINE) $(VENV)/bin/testbed sweep run configs/sweeps/overtrain_micro.yaml --quiet && \
	$(OFFLINE) $(VENV)/bin/testbed results collect $(REPLICATE_OUT) --out $(REPLICATE_OUT)/results.parquet && \
	$(OFFLINE) $(VENV)/bin/testbed analyze replicate $(REPLICATE_OUT)/results.parquet $(REPLICATE_ARGS) \
		> $(REPLICATE_OUT)/replicate.txt && cat $(REPLICATE_OUT)/replicate.txt && \
	$(OFFLINE) $(VENV)/bin/testbed analyze replicate $(REPLICATE_OUT)/results.parquet $(REPLICATE_ARGS) --json \
		> $(REPLICATE_OUT)/replicate.json && \
	$(OFFLINE) $(VENV)/bin/testbed analyze replicate $(REPLICATE_OUT)/results.parquet $(REPLICATE_ARGS) \
		--fit-multipliers > $(REPLICATE_OUT)/replicate_fit_multipliers.txt && \
	$(OFFLINE) $(VENV)/bin/testbed analyze replicate $(REPLICATE_OUT)/results.parquet $(REPLICATE_ARGS) \
		--fit-multipliers --error-asymptote chance > $(REPLICATE_OUT)/replicate_fit_multipliers_chance.txt && \
	$(OFFLINE) $(VENV)/bin/testbed analyze replicate $(REPLICATE_OUT)/results.parquet $(REPLICATE_ARGS) \
		--loss-floor entropy > $(REPLICATE_OUT)/replicate_loss_floor_entropy.txt && \
	$(OFFLINE) $(VENV)/bin/testbed analyze replicate $(REPLICATE_OUT)/results.parquet $(REPLICATE_ARGS) \
		--task $(PREDICTABLE_TASKS) > $(REPLICATE_OUT)/replicate_predictable.txt && \
	$(OFFLINE) $(VENV)/bin/testbed analyze replicate $(REPLICATE_OUT)/results.parquet $(REPLICATE_ARGS) \
		--task $(PREDICTABLE_TASKS) --err-final > $(REPLICATE_OUT)/replicate_predictable_err_final.txt && \
	$(OFFLINE) $(VENV)/bin/testbed analyze classify $(REPLICATE_OUT)/results.parquet --x own \
		> $(REPLICATE_OUT)/classify.txt && cat $(REPLICATE_OUT)/classify.txt && \
	$(OFFLINE) $(VENV)/bin/testbed analyze report $(REPLICATE_OUT)/results.parquet --out $(REPLICATE_OUT)/report \
		--protocol replicate $(REPLICATE_ARGS) && \
	$(OFFLINE) $(VENV)/bin/testbed analyze ladder-plots $(REPLICATE_OUT)/results.parquet --out $(REPLICATE_OUT)/report \
		--params nonembed && \
	echo "replicate finished in $$(( $$(date +%s) - start )) s"

# Isik et al.'s alignment experiment on 2 cores (docs/translation_replication.md): pretrain the mixtures
# (decoder and T5), finetune every checkpoint and the baseline, then analyze translation and the report.
TRANSLATION_OUT := runs/alignment_cpu
replicate-translation: install
	@start=$$(date +%s); \
	$(OFFLINE) $(VENV)/bin/testbed sweep run configs/sweeps/alignment_cpu.yaml --quiet && \
	$(OFFLINE) $(VENV)/bin/testbed sweep run configs/sweeps/alignment_cpu.yaml \
		'finetune.tasks=[syn_fr-syn_en]' 'finetune.sizes=[20000]' --quiet && \
	$(OFFLINE) $(VENV)/bin/testbed results collect $(TRANSLATION_OUT) --out $(TRANSLATION_OUT)/results.parquet && \
	$(OFFLINE) $(VENV)/bin/testbed analyze translation $(TRANSLATION_OUT)/results.parquet \
		> $(TRANSLATION_OUT)/translation.txt && cat $(TRANSLATION_OUT)/translation.txt && \
	$(OFFLINE) $(VENV)/bin/testbed analyze translation $(TRANSLATION_OUT)/results.parquet --json \
		> $(TRANSLATION_OUT)/translation.json && \
	$(OFFLINE) $(VENV)/bin/testbed analyze report $(TRANSLATION_OUT)/results.parquet --out $(TRANSLATION_OUT)/report && \
	echo "replicate-translation finished in $$(( $$(date +%s) - start )) s"

# The real-text arm (configs/sweeps/alignment_real_cpu.yaml): en -> fr and en -> de on the gettext pairs,
# decoder and T5, four real mixtures spanning the alignment score; 47 minutes measured with one worker beside
# another run (session 15). Needs make real-data.
TRANSLATION_REAL_OUT := runs/alignment_real_cpu
replicate-translation-real: install
	@start=$$(date +%s); \
	$(OFFLINE) $(VENV)/bin/testbed sweep run configs/sweeps/alignment_real_cpu.yaml --quiet && \
	$(OFFLINE) $(VENV)/bin/testbed results collect $(TRANSLATION_REAL_OUT) --out $(TRANSLATION_REAL_OUT)/results.parquet && \
	$(OFFLINE) $(VENV)/bin/testbed analyze translation $(TRANSLATION_REAL_OUT)/results.parquet \
		> $(TRANSLATION_REAL_OUT)/translation.txt && cat $(TRANSLATION_REAL_OUT)/translation.txt && \
	echo "replicate-translation-real finished in $$(( $$(date +%s) - start )) s"

# The LR sweep that checks the replication ladder's LR rule (cpu_uniform) on the replication's synthetic corpus:
# its fit rungs and u6 at M = 20 at 0.5, 1 and 2 times the rule's LR (lr_uniform.yaml: the same on syn_en;
# lr_docs.yaml: docs_en; lr_cpu.yaml: the cpu ladder's). After make replicate, its runs join the table: the rule's
# LR then has three seeds at the fit sizes and u6, and u5 and u7 get their run at the rule's LR.
lr-sweep: install
	$(OFFLINE) $(VENV)/bin/testbed sweep run configs/sweeps/lr_zipf.yaml --quiet && \
	$(OFFLINE) $(VENV)/bin/testbed results collect runs/lr_zipf --out runs/lr_zipf/results.parquet && \
	$(OFFLINE) $(VENV)/bin/testbed analyze lr runs/lr_zipf/results.parquet \
		$(if $(wildcard $(REPLICATE_OUT)/results.parquet),--with $(REPLICATE_OUT)/results.parquet) > runs/lr_zipf/lr.txt && \
	cat runs/lr_zipf/lr.txt

sweep: install
	$(OFFLINE) $(VENV)/bin/testbed sweep run $(SWEEP) --backend $(BACKEND)

# What CI checks besides the tests: ruff's format and lint (line length included), and mypy (pyproject.toml).
lint: install
	$(VENV)/bin/ruff format --check testbed analysis tests scripts
	$(VENV)/bin/ruff check testbed analysis tests scripts
	$(VENV)/bin/mypy

clean:
	rm -rf runs .cache .pytest_cache data/real
