"""The bad-input table: each row is a bad input given to the real CLI entry point.

Every row must produce one clear paragraph on stderr (exit 2, no traceback; `--debug` would show it),
raised before any compute, with no partial output left behind. Rows marked `recovers` are inputs the
harness is specified to repair rather than reject (a corrupt or foreign entropy cache): they must be
detected, logged and recomputed.
"""

from __future__ import annotations

import errno
import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from entrodrop_bench.artifacts import RunStatus
from entrodrop_bench.cli import main
from entrodrop_bench.config import load_config
from entrodrop_bench.paths import CONFIGS_DIR, Layout


@dataclass
class Case:
    setup: Callable[[Path, Callable], list[str]]
    """Builds the bad input under tmp; returns CLI argv."""
    error: str
    """Regex the one-paragraph error must match: it names the key (or file) and the bad value."""
    writes: tuple[str, ...] = ()
    """Folders under tmp where the refusal may have written (content-addressed caches); everything else under
    tmp, the runs folder included, must be exactly as the setup left it."""


TINY = str(CONFIGS_DIR / "tiny.yaml")


def _override(*overrides: str, command: str = "prepare") -> Callable[[Path, Callable], list[str]]:
    """The tiny preset with its output under tmp, plus overrides: refusals decided by the config alone."""

    def setup(tmp: Path, _) -> list[str]:
        return [command, TINY, f"output.runs_dir={tmp / 'runs'}", f"output.results_dir={tmp / 'results'}", *overrides]

    return setup


def _file(content: bytes, name: str = "c.yaml") -> Callable[[Path, Callable], list[str]]:
    def setup(tmp: Path, _) -> list[str]:
        (tmp / name).write_bytes(content)
        return ["prepare", str(tmp / name)]

    return setup


def _tiny_text() -> str:
    return (CONFIGS_DIR / "tiny.yaml").read_text()


def _tiny(tmp: Path, mutate: Callable[[dict], None]) -> list[str]:
    data = yaml.safe_load((CONFIGS_DIR / "tiny.yaml").read_text())
    data["output"] = {"runs_dir": str(tmp / "runs"), "results_dir": str(tmp / "results")}
    mutate(data)
    path = tmp / "c.yaml"
    path.write_text(yaml.safe_dump(data))
    return ["prepare", str(path)]


def _mini(tmp: Path, mini_config, edit: Callable[[dict], None] = lambda d: None, command: str = "prepare") -> list[str]:
    data = mini_config().model_dump(mode="json")
    edit(data)
    path = tmp / "c.yaml"
    path.write_text(yaml.safe_dump(data))
    return [command, str(path), "--no-progress"]


def _malformed(tmp, _):
    (tmp / "c.yaml").write_text("name: tiny\ndata: {token_budget: [1, 2\n")
    return ["prepare", str(tmp / "c.yaml")]


def _jsonl(path: Path, texts: list[str]) -> str:
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    return str(path)


def _no_pad_model(tmp: Path, mini_config) -> list[str]:
    import shutil

    model = tmp / "model"
    shutil.copytree(mini_config().model.name_or_path, model)
    cfg = json.loads((model / "tokenizer_config.json").read_text())
    cfg.pop("pad_token", None)
    (model / "tokenizer_config.json").write_text(json.dumps(cfg))
    special = model / "special_tokens_map.json"
    if special.exists():
        m = json.loads(special.read_text())
        m.pop("pad_token", None)
        special.write_text(json.dumps(m))
    return _mini(tmp, mini_config, lambda d: d["model"].update(name_or_path=str(model)))


def _bad_evalplus_file(tmp, mini_config):
    bad = tmp / "humaneval.jsonl"
    bad.write_text(json.dumps({"task_id": "HumanEval/0", "prompt": "def f():\n"}) + "\n")
    return _mini(tmp, mini_config, lambda d: d["eval"].update(evalplus_datasets=["humaneval"], data_overrides={"humaneval": str(bad)}), "eval")


def _trained(tmp: Path, mini_config) -> tuple[list[str], Path]:
    argv = _mini(tmp, mini_config, command="train")
    assert main(argv) == 0
    runs = Path(yaml.safe_load(Path(argv[1]).read_text())["output"]["runs_dir"])
    return argv, runs


def _corrupt_checkpoint(tmp, mini_config):
    argv, runs = _trained(tmp, mini_config)
    layout = Layout.of_runs_dir(str(runs))
    status = RunStatus.read(RunStatus.path(layout, "plain", 0))
    status.state = "running"
    status.write(RunStatus.path(layout, "plain", 0))
    ckpts = sorted((runs / "train/plain/seed0").glob("checkpoint-*"))
    (ckpts[-1] / "model.safetensors").write_bytes(b"not a safetensors file")
    return argv


def _incompatible_run_dir(tmp, mini_config):
    argv = _mini(tmp, mini_config)
    runs = Path(yaml.safe_load(Path(argv[1]).read_text())["output"]["runs_dir"])
    runs.mkdir(parents=True)
    Layout.of_runs_dir(str(runs)).prepared_file.write_text(json.dumps({"format_version": 999}))
    return argv


def _bad_leaderboard(tmp, _):
    bad = tmp / "leaderboard.json"
    bad.write_text(json.dumps({"schema_version": 1, "entries": [{"method": 3}]}))
    (tmp / "results").mkdir()
    (tmp / "results" / "leaderboard_entries.json").write_text("[]")
    return ["leaderboard", "publish", str(tmp / "results"), "--into", str(bad)]


def _disk_full(tmp, mini_config, monkeypatch):
    import torch

    real_save = torch.save

    def full(obj, f, *a, **k):
        if str(f).endswith("trainer_state.pt"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, f, *a, **k)

    monkeypatch.setattr(torch, "save", full)
    return _mini(tmp, mini_config, command="train")


def _runs_dir_is_a_file(tmp: Path, _) -> list[str]:
    (tmp / "runs").write_text("not a folder\n")
    return _override()(tmp, _)


def _results_dir_under_a_file(tmp: Path, _) -> list[str]:
    (tmp / "notes.txt").write_text("a file\n")
    return _override(f"output.results_dir={tmp / 'notes.txt' / 'results'}")(tmp, _)


def _config_is_a_folder(tmp: Path, _) -> list[str]:
    (tmp / "conf.yaml").mkdir()
    return ["prepare", str(tmp / "conf.yaml")]


def _missing_base(tmp: Path, _) -> list[str]:
    (tmp / "c.yaml").write_text("base: nowhere.yaml\nname: x\n")
    return ["prepare", str(tmp / "c.yaml")]


def _publish_into_html(tmp: Path, _) -> list[str]:
    (tmp / "results").mkdir()
    (tmp / "results" / "leaderboard_entries.json").write_text("[]")
    return ["leaderboard", "publish", str(tmp / "results"), "--into", str(tmp / "board.html")]


def _garbage_prepared_record(tmp: Path, _) -> list[str]:
    (tmp / "runs").mkdir()
    Layout.of_runs_dir(str(tmp / "runs")).prepared_file.write_bytes(bytes(range(128, 256)))
    return _override()(tmp, _)


def _garbage_leaderboard_entries(tmp: Path, _) -> list[str]:
    (tmp / "results").mkdir()
    (tmp / "results" / "leaderboard_entries.json").write_bytes(b"\xff\xfe[\x00]\x00")
    return ["leaderboard", "publish", str(tmp / "results"), "--into", str(tmp / "board.json")]


def _lm_eval_file_not_json(tmp: Path, mini_config) -> list[str]:
    bad = tmp / "svamp.json"
    bad.write_text("{\"Body\": 1}\nthis is not json\n")
    return _mini(tmp, mini_config, lambda d: d["eval"].update(lm_eval_tasks=["svamp"], data_overrides={"svamp": str(bad)},
                                                             domains={"math": ["svamp"]}), "eval")


DUPLICATE_SECTION = _tiny_text() + "\ntrain:\n  lr: 0.5\n"
DUPLICATE_NESTED = _tiny_text().replace("  lr: 1.0e-3\n", "  lr: 1.0e-3\n  lr: 0.5\n")
CACHES = ("runs/cache",)

CASES: dict[str, Case] = {
    # --- files and YAML
    "malformed yaml": Case(_malformed, r"c\.yaml is not valid YAML: line 3, column 1: expected ',' or '\]'"),
    "duplicate section": Case(_file(DUPLICATE_SECTION.encode()), r"c\.yaml is not valid YAML: line \d+.*key 'train' twice"),
    "duplicate nested key": Case(_file(DUPLICATE_NESTED.encode()), r"c\.yaml is not valid YAML: line \d+.*key 'lr' twice"),
    "config in UTF-16": Case(_file(_tiny_text().encode("utf-16")), r"c\.yaml is not UTF-8 text \(it looks like UTF-16\): byte 0xff"),
    "config of binary garbage": Case(_file(bytes(range(128, 256)) * 4), r"c\.yaml is not UTF-8 text: byte 0x80 at offset 0"),
    "config with a NUL byte": Case(_file(b"name: tiny\x00\n"), r"c\.yaml is not valid YAML: .*#x0000"),
    "config is a list": Case(_file(b"- name: tiny\n"), r"c\.yaml: expected a mapping of sections at the top level, got list"),
    "config is a folder": Case(_config_is_a_folder, r"config file .*conf\.yaml is a folder"),
    "base file missing": Case(_missing_base, r"c\.yaml: base: 'nowhere\.yaml' .* does not exist"),
    # --- overrides
    "bad override syntax": Case(_override("train.lr"), r"override 'train\.lr': expected key\.path=value"),
    "override value not YAML": Case(_override("train.lr=[1,"), r"override 'train\.lr=\[1,': the value '\[1,' is not valid YAML"),
    "override with empty key": Case(_override("=3"), r"override '=3': the key path '' has an empty part"),
    "override with empty key part": Case(_override("train..lr=3"), r"override 'train\.\.lr=3': the key path 'train\.\.lr' has an empty part"),
    "override through a value": Case(_override("train.lr.peak=3"), r"override 'train\.lr\.peak=3': 'lr' is not a section \(it holds 0\.001\)"),
    "override with duplicate keys": Case(_override("train={lr: 1, lr: 2}"), r"override 'train=\{lr: 1, lr: 2\}'.*key 'lr' twice"),
    "unknown key": Case(lambda t, m: _tiny(t, lambda d: d["train"].update(lr_peak=1)), r"train\.lr_peak: unknown key"),
    "wrong type": Case(lambda t, m: _tiny(t, lambda d: d["train"].update(micro_batch_size="big")), r"train\.micro_batch_size: .*integer.*'big'"),
    # --- names that become paths
    "method escaping the runs folder": Case(_override('methods={"../../escaped": {plugin: plain}}'), r"methods: method '\.\./\.\./escaped' is not a valid name"),
    "method with a slash": Case(_override('methods={"a/b": {plugin: plain}}'), r"methods: method 'a/b' is not a valid name"),
    "hidden method name": Case(_override('methods={".hidden": {plugin: plain}}'), r"methods: method '\.hidden' is not a valid name"),
    "grid value with a slash": Case(_override("methods.weight_decay.grid.weight_decay=[a/b]"), r"methods\.weight_decay\.grid\.weight_decay: value 'a/b' cannot be part of a run folder name"),
    "grid value repeated": Case(_override("methods.weight_decay.grid.weight_decay=[0.1, 0.10]"), r"methods\.weight_decay\.grid\.weight_decay: \[0\.1, 0\.1\] lists 0\.1 twice"),
    "grid with an empty list": Case(_override("methods.weight_decay.grid.weight_decay=[]"), r"methods\.weight_decay\.grid\.weight_decay: \[\] is empty"),
    "lm-eval task as a relative path": Case(_override("eval.lm_eval_tasks=[../configs/tiny]"), r"eval\.lm_eval_tasks\.0: '\.\./configs/tiny' is not a valid name.*not a path"),
    "lm-eval task as an absolute path": Case(_override(f"eval.lm_eval_tasks=[{CONFIGS_DIR / 'tiny'}]"), r"eval\.lm_eval_tasks\.0: '/.*/configs/tiny' is not a valid name"),
    "code benchmark as a path": Case(_override("eval.evalplus_datasets=[../humaneval]"), r"eval\.evalplus_datasets\.0: '\.\./humaneval' is not a valid name"),
    "data override for no benchmark": Case(_override("eval.data_overrides={gsm8K: /x.jsonl}"), r"eval\.data_overrides: 'gsm8K' is not a configured benchmark"),
    "preset with a slash": Case(_override("preset=../x"), r"preset: '\.\./x' is not a valid name"),
    "experiment name with a slash": Case(_override("name=a/b"), r"name: 'a/b' is not a valid name"),
    "repeated seed": Case(_override("train.seeds=[0, 0]"), r"train\.seeds: \[0, 0\] repeats \[0\]"),
    "negative seed": Case(_override("train.seeds=[-1]"), r"train\.seeds\.0: .*greater than or equal to 0 \(got -1\)"),
    "negative world seed": Case(_override("tiny.seed=-3"), r"tiny\.seed: .*greater than or equal to 0 \(got -3\)"),
    "runs_dir empty": Case(_override("output.runs_dir=''"), r"output\.runs_dir: .*at least 1 character \(got ''\)"),
    "runs_dir blank": Case(_override("output.runs_dir=' '"), r"output\.runs_dir: ' ' is blank"),
    "runs_dir is the checkout": Case(_override("output.runs_dir=."), r"output\.runs_dir: '\.' \(.*\) is the project checkout"),
    "runs_dir inside the package": Case(_override("output.runs_dir=entrodrop_bench/runs"), r"output\.runs_dir: 'entrodrop_bench/runs' .* inside the project's entrodrop_bench/ folder"),
    "runs_dir is a file": Case(_runs_dir_is_a_file, r"output\.runs_dir: '.*/runs' .* exists and is not a folder"),
    "results_dir under a file": Case(_results_dir_under_a_file, r"output\.results_dir: '.*notes\.txt/results' .* cannot be created: .*notes\.txt is a file"),
    # --- values the config alone decides
    "unregistered method": Case(lambda t, m: _tiny(t, lambda d: d["methods"].update(x={"plugin": "dropconnect"})), r"methods\.x\.plugin: unknown regularizer 'dropconnect'\. Registered: .*plain"),
    "no methods": Case(_override("methods={}"), r"methods: .*at least 1 item.*\(got \{\}\)"),
    "gamma_max above 1": Case(lambda t, m: _tiny(t, lambda d: d["methods"]["entrodrop"]["params"].update(gamma_max=2)), r"methods\.entrodrop\.params\.gamma_max: .*\(got 2\)"),
    "gamma_max below 0": Case(lambda t, m: _tiny(t, lambda d: d["methods"]["entrodrop"]["params"].update(gamma_max=-0.1)), r"methods\.entrodrop\.params\.gamma_max: .*\(got -0\.1\)"),
    "percentile 0": Case(lambda t, m: _tiny(t, lambda d: d["methods"]["entrodrop"]["params"].update(percentile=0)), r"methods\.entrodrop\.params\.percentile: .*\(got 0\)"),
    "refresh for a static signal": Case(_override("methods.entrodrop.params.refresh=5"), r"methods\.entrodrop\.params\.refresh: refresh applies to online signals"),
    "online refresh of 0 steps": Case(_override("methods.entrodrop_online.params.refresh=0"), r"methods\.entrodrop_online\.params\.refresh: .*`epoch` or a number of optimizer steps >= 1"),
    "online signal gating everything": Case(_override("methods.entrodrop_online.params.target=all"), r"methods\.entrodrop_online\.params\.signal: target all gates every eligible token"),
    "percentile above 1": Case(lambda t, m: _tiny(t, lambda d: d["methods"]["entrodrop"]["params"].update(percentile=1.5)), r"methods\.entrodrop\.params\.percentile: .*\(got 1\.5\)"),
    "infinite plugin param": Case(_override("methods.neftune.params.alpha=.inf"), r"methods\.neftune\.params\.alpha: .*finite number \(got inf\)"),
    "zero token budget": Case(lambda t, m: _tiny(t, lambda d: d["data"].update(token_budget=0)), r"data\.token_budget: .*\(got 0\)"),
    "negative token budget": Case(lambda t, m: _tiny(t, lambda d: d["data"].update(token_budget=-100)), r"data\.token_budget: .*\(got -100\)"),
    "token budget below one step": Case(_override("data.token_budget=1000"), r"data\.token_budget: 1000 is smaller than one optimizer step \(train\.global_batch_tokens = 2048\)"),
    "mix ratio does not sum": Case(lambda t, m: _tiny(t, lambda d: d["data"].update(mix_ratio=[0.7, 0.4])), r"data\.mix_ratio: \[0\.7, 0\.4\] must be two non-negative numbers summing to 1"),
    "mix ratio without target": Case(_override("data.mix_ratio=[0, 1]"), r"data\.mix_ratio: \[0\.0, 1\.0\]: the target share must be above 0"),
    "batch below one sequence": Case(_override("train.global_batch_tokens=100"), r"train\.global_batch_tokens: 100 is not a whole number of sequences of data\.seq_len 128"),
    "batch not whole sequences": Case(_override("train.global_batch_tokens=3000"), r"train\.global_batch_tokens: 3000 .* \(e\.g\. 2944 or 3072\)"),
    "micro batch above the step": Case(_override("train.micro_batch_size=64"), r"train\.micro_batch_size: 64 is more than the 16 sequences of one optimizer step"),
    "infinite learning rate": Case(_override("train.lr=.inf"), r"train\.lr: .*finite number \(got inf\)"),
    "nan learning rate": Case(_override("train.lr=.nan"), r"train\.lr: .*finite number \(got nan\)"),
    "heads do not divide width": Case(_override("tiny.num_heads=3"), r"tiny\.num_heads: 3 does not divide tiny\.hidden_size 128"),
    "no text fields": Case(_override("data.target.text_fields=[]"), r"data\.target\.text_fields: .*at least 1 item.*\(got \[\]\)"),
    "domain without benchmarks": Case(_override("eval.domains.general=[]"), r"eval\.domains\.general: \[\] is empty"),
    "no domains": Case(_override("eval.domains={}", command="train"), r"eval\.domains is empty: selection .*needs domain -> benchmarks"),
    "tiny corpus without a tiny world": Case(_override("tiny=null"), r"data\.target\.source: 'tiny_math' is an embedded tiny corpus but the config has no `tiny:` section"),
    "missing data file": Case(lambda t, m: _tiny(t, lambda d: d["data"]["target"].update(path=str(t / "none.jsonl"))), r"data\.target\.path: file .*none\.jsonl does not exist"),
    # --- command-line selections
    "train an unknown run": Case(_override("--run", "nope", command="train"), r"--run: unknown run\(s\) \['nope'\]"),
    "train an unknown seed": Case(_override("--seed", "7", command="train"), r"--seed: \[7\] not in train\.seeds \[0\]"),
    "publish into an html file": Case(_publish_into_html, r"--into: '.*board\.html' must name a \.json file"),
    # --- data files, read before compute
    "unknown lm-eval task": Case(lambda t, m: _mini(t, m, lambda d: d["eval"].update(lm_eval_tasks=["gsm9k"], domains={"math": ["gsm9k"]}), "run"), r"eval\.lm_eval_tasks: unknown lm-eval task 'gsm9k'"),
    "unknown code benchmark": Case(lambda t, m: _mini(t, m, lambda d: d["eval"].update(evalplus_datasets=["humaneval_pro"]), "run"), r"eval\.evalplus_datasets: unknown code benchmark 'humaneval_pro'"),
    "evalplus dataset not in its schema": Case(_bad_evalplus_file, r"humaneval\.jsonl, line 1: missing fields"),
    "lm-eval data file not JSON": Case(_lm_eval_file_not_json, r"eval\.data_overrides\.svamp: .*svamp\.json, line 2: not a JSON object"),
    "empty corpus": Case(lambda t, m: _mini(t, m, lambda d: d["data"]["target"].update(path=_jsonl(t / "e.jsonl", ["", "  "]))), r"data\.target: corpus .*e\.jsonl is empty"),
    "corpus smaller than one sequence": Case(lambda t, m: _mini(t, m, lambda d: d["data"]["target"].update(path=_jsonl(t / "s.jsonl", ["1 + 1 = 2"] * 5))), r"data\.target: corpus has \d+ tokens, fewer than one sequence \(data\.seq_len = 64\)", CACHES),
    "tokenizer without pad token": Case(_no_pad_model, r"tokenizer of '.*model' has no pad token; set model\.pad_token"),
    "corrupt checkpoint": Case(_corrupt_checkpoint, r"checkpoint .*checkpoint-\d+ is corrupt"),
    "run record of binary garbage": Case(_garbage_prepared_record, r"runs/prepared\.json cannot be read \(.*utf-8.*\); use another output\.runs_dir or delete the old runs"),
    "leaderboard entries not UTF-8": Case(_garbage_leaderboard_entries, r"results/leaderboard_entries\.json cannot be read \(.*utf-8.*"
                                                                        r"re-run `entrodrop-bench leaderboard build CONFIG`"),
    "run dir from an incompatible version": Case(_incompatible_run_dir, r"runs/prepared\.json was written in PreparedRecord format 999, this version of entrodrop-bench reads format 1: use another output\.runs_dir or delete the old runs"),
    "leaderboard violating the schema": Case(_bad_leaderboard, r"leaderboard\.json is not a valid leaderboard.*\$\.entries\[0\]"),
}


ALIAS_BOMB = ("name: tiny\na: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
              "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
              "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n"
              "g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]\nh: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g, *g]\n"
              "i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h, *h]\n")


def _short_model(tmp: Path, mini_config) -> list[str]:
    """A local model whose config.json allows fewer positions than data.seq_len (64)."""
    import shutil

    model = tmp / "model"
    shutil.copytree(mini_config().model.name_or_path, model)
    cfg = json.loads((model / "config.json").read_text())
    cfg["max_position_embeddings"] = 32
    (model / "config.json").write_text(json.dumps(cfg))
    return _mini(tmp, mini_config, lambda d: d["model"].update(name_or_path=str(model)))


BOUNDED_CASES: dict[str, Case] = {
    "yaml alias bomb": Case(_file(ALIAS_BOMB.encode()), r"c\.yaml is not valid YAML: its aliases \(\*anchor\) expand to more than 100000 values"),
    "config over 1 MiB": Case(_file(b"name: tiny\n" + b"#" * (2 << 20) + b"\n"), r"c\.yaml is \d+ bytes, over the limit of 1048576"),
    "huge value echoed": Case(_override("name=" + "a" * 900_000), r"name: 'a{100,160}\.\.\. \(900002 characters\) is not a valid name"),
    "huge override value echoed": Case(_override("train.lr=" + "z" * 500_000), r"train\.lr: .*\(got 'z{100,160}\.\.\. \(500002 characters\)\)"),
    "huge override that is not YAML": Case(_override("train.lr=[" + "1," * 200_000), r"override 'train\.lr=\[1,1,.*\.\.\. \(\d+ characters\)"),
    "results_dir is runs_dir": Case(lambda t, m: ["prepare", TINY, f"output.runs_dir={t / 'out'}", f"output.results_dir={t / 'out'}"],
                                    r"output\.results_dir: '.*/out' is the same folder as output\.runs_dir"),
    "results_dir inside runs_dir/train": Case(lambda t, m: ["prepare", TINY, f"output.runs_dir={t / 'runs'}",
                                                           f"output.results_dir={t / 'runs' / 'train' / 'r'}"],
                                              r"output\.results_dir: '.*/runs/train/r' overlaps output\.runs_dir"),
    "runs_dir inside results_dir": Case(lambda t, m: ["prepare", TINY, f"output.runs_dir={t / 'results' / 'runs'}",
                                                     f"output.results_dir={t / 'results'}"],
                                        r"output\.results_dir: '.*/results' overlaps output\.runs_dir"),
    "seq_len beyond the tiny model": Case(_override("data.seq_len=2048", "train.global_batch_tokens=4096", "train.micro_batch_size=1"),
                                          r"data\.seq_len: 2048 is more than the tiny model's 1024 positions"),
    "seq_len beyond a hub model": Case(_short_model, r"data\.seq_len: 64 is more than '.*/model''s 32 positions \(max_position_embeddings"),
    "absurd eval batch size": Case(_override("eval.batch_size=100000000"), r"eval\.batch_size: .*less than or equal to 4096 \(got 100000000\)"),
}
CASES.update(BOUNDED_CASES)


@pytest.mark.parametrize("name", list(BOUNDED_CASES))
def test_bounded_inputs_are_refused_quickly_with_a_short_message(name, tmp_path, mini_config, capsys):
    """Size, alias expansion, echoed values, model positions, overlapping folders: refused before compute,
    within a few seconds, in a message of a few lines that names the field."""
    import time

    argv = BOUNDED_CASES[name].setup(tmp_path, mini_config)
    capsys.readouterr()
    tic = time.monotonic()
    assert main(argv) == 2
    assert time.monotonic() - tic < 20
    err = capsys.readouterr().err
    assert len(err) < 600, err[:2000]


def _snapshot(root: Path) -> dict[str, str]:
    """Every file and folder under `root`: path -> content hash (folders: 'dir')."""
    out = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        out[rel] = "dir" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
    return out


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_gives_one_clear_paragraph(name, tmp_path, mini_config, capsys):
    case = CASES[name]
    argv = case.setup(tmp_path, mini_config)
    before = _snapshot(tmp_path)
    capsys.readouterr()
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("error: ") and "Traceback" not in err and err.count("\nerror") == 0
    assert re.search(case.error, err, re.S), err
    after = _snapshot(tmp_path)
    changed = {p for p in before.keys() | after.keys() if before.get(p) != after.get(p)}
    # Allowed: files inside `writes` folders, and the folders that lead to them.
    changed = {p for p in changed if not any(p == w or p.startswith(w + "/") or w.startswith(p + "/") for w in case.writes)}
    assert not changed, f"refused input wrote or changed: {sorted(changed)[:10]}"


def test_disk_full_during_save(tmp_path, mini_config, monkeypatch, capsys):
    argv = _disk_full(tmp_path, mini_config, monkeypatch)
    assert main(argv) in (1, 2)
    out = capsys.readouterr()
    assert "No space left on device" in out.err + out.out and "Traceback" not in out.err
    runs = Path(yaml.safe_load(Path(argv[1]).read_text())["output"]["runs_dir"])
    run_dir = runs / "train/plain/seed0"
    assert not list(run_dir.glob("checkpoint-*")) and not list(run_dir.glob(".*partial"))


@pytest.mark.parametrize("damage", ["truncate", "garbage", "foreign model"])
def test_corrupt_or_foreign_entropy_cache_is_recomputed(tmp_path, mini_config, caplog, damage):
    from entrodrop_bench.paths import Layout
    from entrodrop_bench.prepare.signals import base_model_signals
    from entrodrop_bench.prepare.stage import prepare

    config = mini_config()
    prepared = prepare(config, Layout.from_config(config), echo=lambda s: None)
    good, _ = base_model_signals(prepared, prepared.target_val)
    (cache,) = list(Layout.from_config(config).entropy_cache_dir.glob("*.safetensors"))
    if damage == "truncate":
        cache.write_bytes(cache.read_bytes()[:100])
    elif damage == "garbage":
        cache.write_bytes(b"\x00" * 4096)
    else:  # a cache with this file name but computed from another model's weights
        from safetensors import safe_open
        from safetensors.numpy import save_file

        with safe_open(str(cache), "np") as f:
            meta, arrays = dict(f.metadata()), {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is not a mapping)
        meta = {k: ("0" * 16 if "weights" in k else v) for k, v in meta.items()}
        save_file({k: v * 0 for k, v in arrays.items()}, str(cache), metadata=meta)
    caplog.set_level("WARNING")
    again, _ = base_model_signals(prepared, prepared.target_val)
    assert any("recomput" in r.getMessage().lower() for r in caplog.records), [r.getMessage() for r in caplog.records]
    import numpy as np

    assert np.allclose(good, again, equal_nan=True)


def test_stages_that_fail_work_exit_nonzero_and_say_what(tmp_path, mini_config, capsys):
    """A benchmark that fails on every checkpoint: `eval`, `select` and `run` finish what they can, then exit 1 and
    name what failed (they used to exit 0)."""
    bad = tmp_path / "svamp.json"
    bad.write_text(json.dumps([{"ID": "x", "Question": "How many?", "Answer": "not a number"}]))  # no Body
    ev = {"lm_eval_tasks": ["svamp"], "data_overrides": {"svamp": str(bad)}, "domains": {"math": ["svamp"]},
          "target_domain": "math", "limit": 2, "batch_size": 2, "max_gen_toks": 4}
    argv = _mini(tmp_path, mini_config, lambda d: d["eval"].update(ev), "train")
    assert main(argv) == 0
    n_checkpoints = len(list((tmp_path / "runs/train/plain/seed0").glob("checkpoint-*")))
    capsys.readouterr()
    for command, says in (("eval", r"eval: plain/seed0/checkpoint-\d+ svamp: .*Error.*\(traceback: .*failures/svamp\.txt\)"),
                          ("select", r"select: plain/seed0: no evaluated checkpoints"),
                          ("run", r"eval: plain/seed0/checkpoint-\d+ svamp: ")):
        code = main([command, *argv[1:]])
        err = capsys.readouterr().err
        assert code == 1, err
        assert re.search(rf"error: `{command}` finished with \d+ failure\(s\):", err), err
        assert re.search(says, err), err
        assert "Traceback" not in err
    assert err.count("svamp:") == n_checkpoints


@pytest.mark.parametrize("command", [["select"], ["tables"], ["figures"], ["leaderboard", "build"]])
def test_result_stages_with_nothing_to_select_exit_nonzero(command, tmp_path, capsys):
    """Before anything is evaluated, the result stages write what they can and say why nothing was selected; the
    stages after `select` refuse to start before it has written selection.json."""
    argv = _override()(tmp_path, None)
    if command != ["select"]:
        assert main([*command, *argv[1:]]) == 2
        err = capsys.readouterr().err
        assert re.search(r"error: .*results/selection\.json does not exist: run `entrodrop-bench select CONFIG` first", err), err
        assert main(["select", *argv[1:]]) == 1
        capsys.readouterr()
    assert main([*command, *argv[1:]]) == 1
    err = capsys.readouterr().err
    runs = len(load_config(CONFIGS_DIR / "tiny.yaml").runs)
    assert f"error: `{' '.join(command)}` finished with {runs} failure(s)" in err, err  # one per run of configs/tiny.yaml
    assert "select: plain/seed0: no evaluated checkpoints in the results store and no status.json (not trained?)" in err
