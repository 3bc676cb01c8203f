#!/usr/bin/env bash
# The OpenCompass oracle's own environment (.venv-opencompass, gitignored): the `opencompass` package from PyPI,
# installed WITHOUT its declared dependencies (they pin numpy<2, datasets<4, scikit_learn==1.5.0, httpx==0.27.2 and
# tree-sitter, which clash with the project's environment), plus only what the modules the oracle imports need:
# its prompt template and retriever code (openicl), the registry (mmengine-lite) and the dataset modules whose
# postprocessors and evaluators score (gsm8k, math, OlympiadBench, IFEval, ...). No torch, no model code.
# Usage: .ci/opencompass-env.sh [VENV]  (idempotent; about 1 minute on a warm pip cache)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${1:-.venv-opencompass}
OC_VERSION=0.5.4
PY=${PYTHON:-python3}
if [[ -f $VENV/.installed && $(cat "$VENV/.installed") == "$OC_VERSION" ]]; then
  echo "$VENV: opencompass $OC_VERSION already installed"; exit 0
fi
test -x "$VENV/bin/python" || "$PY" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip install -q --disable-pip-version-check)
"${PIP[@]}" --no-deps "opencompass==$OC_VERSION"
# mmengine-lite: OpenCompass's registry and config reader. Its own dependencies, minus opencv (unused here).
"${PIP[@]}" --no-deps "mmengine-lite==0.11.0rc3"
"${PIP[@]}" addict pyyaml rich termcolor yapf regex numpy
# What the scoring modules import at module level: sympy (maths equivalence; its LaTeX parser needs antlr4
# 4.11, hence that math-verify extra), latex2sympy2_extended and
# math-verify (MATHVerifyEvaluator), nltk/langdetect/immutabledict (IFEval's instruction checks), jieba is
# imported by a text utility; datasets (their loaders' module imports, never called here).
# torch (the local CPU wheel, as the Makefile pins it) and transformers: openicl's dataset reader imports both.
"${PIP[@]}" "torch==2.13.0" transformers
"${PIP[@]}" sympy "math-verify[antlr4_11_0]" "antlr4-python3-runtime==4.11.*" nltk langdetect immutabledict absl-py jieba datasets jsonlines \
  tabulate pandas scipy importlib-metadata requests httpx scikit-learn evaluate rouge_chinese "rank_bm25==0.2.2"
echo "$OC_VERSION" > "$VENV/.installed"
echo "$VENV: opencompass $OC_VERSION ready"
