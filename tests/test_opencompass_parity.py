"""OpenCompass's own code as the reference: the parity table is generated from the comparison and never stale.

- The comparison (tests/opencompass/parity.py) against the oracle's output (.ci/opencompass_oracle.py, run in
  `.venv-opencompass` by `make test-opencompass`) must reproduce tasks/opencompass_parity.json exactly, and agree
  on every GSM8K, SVAMP and IFEval score, and cover every benchmark of the real presets (code extraction
  included); skipped, saying why, when the oracle's output or the real data is absent.
- tasks/README.md's table must be the one generated from tasks/opencompass_parity.json.
- MATH from a local file keeps its four Minerva exemplars (the offline prompt is rendered and searched).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from test_eval_real_data import needs_shared

sys.path.insert(0, str(Path(__file__).resolve().parent / "opencompass"))
import parity  # noqa: E402

ORACLE = Path(__import__("os").environ.get("OPENCOMPASS_ORACLE_JSON", parity.DEFAULT_ORACLE))


def test_parity_table_is_generated_from_the_committed_comparison():
    summary = json.loads(parity.SUMMARY.read_text())
    text = parity.README.read_text()
    assert parity.table(summary) in text, ("tasks/README.md's parity table is stale: run "
                                           "`.venv/bin/python tests/opencompass/parity.py --write` (make test-opencompass)")


def _oracle_inputs_sha256() -> str:
    """The same digest .ci/opencompass_oracle.py records (it runs in its own environment, so it is not imported)."""
    import hashlib

    digest = hashlib.sha256()
    for path in (parity.REPO / ".ci" / "opencompass_oracle.py", parity.REPO / "tests" / "opencompass" / "items.py"):
        digest.update(path.read_bytes())
    return digest.hexdigest()


@needs_shared
def test_harness_agrees_with_opencompass_oracle(tmp_path):
    if not ORACLE.is_file():
        pytest.skip(f"no OpenCompass oracle output at {ORACLE}: `make test-opencompass` builds .venv-opencompass and "
                    "runs .ci/opencompass_oracle.py")
    oracle = json.loads(ORACLE.read_text())
    if oracle.get("_inputs_sha256") != _oracle_inputs_sha256():
        pytest.skip(f"the OpenCompass oracle output at {ORACLE} was made from another oracle script or item set: "
                    "`make test-opencompass` remakes it")
    summary = parity.compare(oracle, parity.ours(oracle, tmp_path))
    assert summary == json.loads(parity.SUMMARY.read_text()), (
        "the comparison changed: rerun `.venv/bin/python tests/opencompass/parity.py --write` and review the table")
    rows = summary["benchmarks"]
    for name in ("gsm8k", "svamp", "ifeval"):
        assert rows[name]["scores_agree"] == rows[name]["generations"], rows[name]["disagreements"]
    assert rows["gsm8k"]["prompts_equal"] == rows["gsm8k"]["items"]
    # Every benchmark of the real presets is compared (CollegeMath: OpenCompass has no config to compare with),
    # and the code benchmarks' extraction is scored, not only their prompts.
    assert set(rows) == {"gsm8k", "svamp", "minerva_math", "olympiadbench", "ifeval", "arc_challenge", "piqa", "mmlu",
                         "hellaswag", "humaneval", "mbpp", "livecodebench"}
    assert summary["college_math_configs"] == [], "OpenCompass now has a CollegeMath config: compare with it"
    for name in ("humaneval", "mbpp", "livecodebench"):
        assert rows[name]["generations"] > 0 and set(parity.NOTES) >= set(rows)


def test_offline_math_prompt_holds_the_four_minerva_exemplars(tmp_path):
    """eval.data_overrides.minerva_math_<subject> with no train file beside it: the exemplars must stay."""
    import lm_eval.tasks.minerva_math.utils as M
    from items import MATH_ITEMS

    data = tmp_path / "algebra_test.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in MATH_ITEMS))
    prompts = parity.our_prompts("minerva_math_algebra", data, tmp_path / "run")
    exemplars = M.list_fewshot_samples()
    assert len(exemplars) == 4 and len(prompts) == len(MATH_ITEMS)
    for prompt in prompts:
        for ex in exemplars:
            assert ex["problem"] in prompt and ex["solution"] in prompt
        assert not any(r["problem"] in prompt.rsplit("Problem:", 1)[0] for r in MATH_ITEMS), "a test problem as exemplar"
