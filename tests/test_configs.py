"""Every shipped config loads; each class of bad config fails before compute with a clear message."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from entrodrop_bench.config import ExperimentConfig, load_config, run_names
from entrodrop_bench.errors import ConfigError
from entrodrop_bench.paths import CONFIGS_DIR

SHIPPED = sorted(CONFIGS_DIR.glob("*.yaml"))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_every_shipped_config_loads(path: Path):
    config = load_config(path)
    assert isinstance(config, ExperimentConfig)
    assert "plain" in config.methods, "every experiment needs the plain baseline (relative gains, j0=auto)"
    assert run_names(config)


def test_tiny_preset_covers_every_table():
    config = load_config(CONFIGS_DIR / "tiny.yaml")
    tables = {m.table for m in config.methods.values()}
    assert {None, "targeting", "gamma", "schedule"} <= tables
    assert {"plain", "entrodrop", "token_dropout", "neftune", "weight_decay", "hidden_dropout"} <= {m.plugin for m in config.methods.values()}


def test_inheritance_and_method_removal():
    config = load_config(CONFIGS_DIR / "qwen3-1.7b-math.yaml")
    assert config.model.name_or_path == "Qwen/Qwen3-1.7B-Base"
    assert config.data.seq_len == 4096 and config.data.token_budget == 1_000_000_000
    ablations = load_config(CONFIGS_DIR / "qwen3-0.6b-math-ablations.yaml")
    assert "weight_decay" not in ablations.methods and "entrodrop_high" in ablations.methods


def test_overrides_apply_with_yaml_types():
    config = load_config(CONFIGS_DIR / "tiny.yaml", ["train.lr=3e-4", "train.seeds=[0, 1]", "eval.limit=5"])
    assert config.train.lr == 3e-4 and config.train.seeds == [0, 1] and config.eval.limit == 5


def _write(tmp_path: Path, mutate) -> Path:
    data = yaml.safe_load((CONFIGS_DIR / "tiny.yaml").read_text())
    mutate(data)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


BAD = {
    "unknown key": (lambda d: d["train"].update(learning_rate=1), r"train\.learning_rate: unknown key"),
    "wrong type": (lambda d: d["data"].update(seq_len="long"), r"data\.seq_len: .*integer.*'long'"),
    "out of range lr": (lambda d: d["train"].update(lr=-1), r"train\.lr: .*greater than 0"),
    "zero budget": (lambda d: d["data"].update(token_budget=0), r"data\.token_budget"),
    "negative budget": (lambda d: d["data"].update(token_budget=-5), r"data\.token_budget"),
    "ratio does not sum": (lambda d: d["data"].update(mix_ratio=[0.6, 0.6]), r"data\.mix_ratio: \[0\.6, 0\.6\] must be .* summing to 1"),
    "unregistered method": (lambda d: d["methods"].update(x={"plugin": "nope"}), r"methods\.x\.plugin: unknown regularizer 'nope'\. Registered: .*entrodrop"),
    "gamma_max above 1": (lambda d: d["methods"]["entrodrop"]["params"].update(gamma_max=1.5), r"methods\.entrodrop\.params\.gamma_max"),
    "percentile outside (0,1)": (lambda d: d["methods"]["entrodrop"]["params"].update(percentile=1.0), r"methods\.entrodrop\.params\.percentile"),
    "unknown plugin param": (lambda d: d["methods"]["neftune"]["params"].update(beta=1), r"methods\.neftune\.params\.beta: unknown key"),
    "missing data file": (lambda d: d["data"]["target"].update(path="/nonexistent/x.jsonl"), r"data\.target\.path: file /nonexistent/x\.jsonl does not exist"),
    "missing section": (lambda d: d.pop("data"), r"data: required key is missing"),
    "unknown domain benchmark": (lambda d: d["eval"]["domains"].update(math=["nope"]), r"eval\.domains: benchmarks \['nope'\]"),
    "j0 auto without a baseline": (lambda d: d["methods"].pop("plain"), r"methods\.entrodrop\.params\.j0: 'auto' needs the step of the baseline run"),
    "no domains": (lambda d: d["eval"].update(domains={}), r"eval\.domains is empty"),
    # a misspelt table would file the method in no table at all: refused, naming the field and the tables there are
    "unknown table": (lambda d: d["methods"]["entrodrop_high"].update(table="gama"),
                      r"methods\.entrodrop_high\.table: .*'main', 'targeting', 'gamma' or 'schedule'.*'gama'"),
}


@pytest.mark.parametrize("case", sorted(BAD), ids=str)
def test_bad_config_names_key_and_value(case, tmp_path):
    mutate, pattern = BAD[case]
    with pytest.raises(ConfigError, match=pattern):
        load_config(_write(tmp_path, mutate))


def test_malformed_yaml(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "absent.yaml")


def test_bad_override_syntax():
    with pytest.raises(ConfigError, match="expected key.path=value"):
        load_config(CONFIGS_DIR / "tiny.yaml", ["train.lr"])


MAIN_TABLE_PRESETS = [p for p in SHIPPED if load_config(p).paper_table in (1, 2)]


@pytest.mark.parametrize("path", MAIN_TABLE_PRESETS, ids=lambda p: p.name)
def test_every_table1_and_table2_preset_trains_vanilla_token_dropout_as_a_main_row(path: Path):
    """The paper's Tables 1 and 2 have a "+Token Dropout" row for every backbone."""
    config = load_config(path)
    assert any(m.plugin == "token_dropout" and m.table in (None, "main") for m in config.methods.values()), path.name


def test_main_table_presets_are_the_papers():
    assert {p.name for p in MAIN_TABLE_PRESETS} == {"qwen3-0.6b-math.yaml", "qwen3-1.7b-math.yaml", "llama3.1-8b-math.yaml",
                                                    "qwen3-0.6b-code.yaml", "tiny.yaml", "tiny-code.yaml",
                                                    "tiny-study.yaml", "tiny-demo.yaml"}


def test_tiny_token_dropout_run_keeps_its_name_and_key_when_filed_in_table1():
    """It used to be a Table 3 (`targeting`) method; now a main-table one that Table 3 also reads. Its run key
    ignores the `table` role, so the run trained before is reused, nothing retrains."""
    from entrodrop_bench.config import run_key

    config = load_config(CONFIGS_DIR / "tiny.yaml")
    assert "token_dropout" in run_names(config)
    as_before = load_config(CONFIGS_DIR / "tiny.yaml", ["methods.token_dropout.table=targeting"])
    assert run_key(config, "token_dropout", 0) == run_key(as_before, "token_dropout", 0)
    # what it does depend on
    assert run_key(config, "token_dropout", 0) != run_key(config, "token_dropout", 1)
    assert run_key(config, "token_dropout", 0) != run_key(load_config(CONFIGS_DIR / "tiny.yaml", ["train.lr=3e-4"]), "token_dropout", 0)
    assert run_key(config, "token_dropout", 0) == run_key(load_config(CONFIGS_DIR / "tiny.yaml", ["train.threads=2", "name=x", "eval.limit=5"]), "token_dropout", 0)


def test_explicit_j0_needs_no_baseline(tmp_path):
    """The dependency is declared from the typed params: without `j0: auto` (or under the static schedule) no
    baseline is needed."""
    def mutate(d):
        d["methods"] = {"entrodrop": {"plugin": "entrodrop", "params": {"j0": 0.3}},
                        "static": {"plugin": "token_dropout", "params": {"schedule": "static"}}}
    config = load_config(_write(tmp_path, mutate))
    assert all(spec.baseline_dependency is None for spec in config.runs.values())


def test_benchmark_outside_every_domain_is_a_warning(tmp_path, caplog):
    config = load_config(_write(tmp_path, lambda d: d["eval"]["lm_eval_tasks"].append("tiny_extra")))
    assert "tiny_extra" in config.eval.lm_eval_tasks
    assert "['tiny_extra'] are evaluated but in no eval.domains entry" in caplog.text


def test_params_are_resolved_into_each_plugins_typed_config_at_load():
    from baselines.entrodrop import EntroDropConfig
    from baselines.weight_decay import WeightDecayConfig

    config = load_config(CONFIGS_DIR / "tiny.yaml")
    entro = config.runs["entrodrop"]
    assert isinstance(entro.settings, EntroDropConfig) and entro.settings.percentile == 0.5  # default filled in
    assert entro.params == {"gamma_max": 0.1, "schedule": "sigmoid", "j0": "auto"}  # as written: what run_key hashes
    assert entro.baseline_dependency == "j0" and entro.role.kind == "proposed"
    grid = config.runs["weight_decay@weight_decay=0.5"]
    assert isinstance(grid.settings, WeightDecayConfig) and grid.settings.weight_decay == 0.5
    assert run_names(config)["weight_decay@weight_decay=0.5"] == ("weight_decay", "weight_decay", {"weight_decay": 0.5})


# Computed by the code before params were typed (commit 134d857; every run of tiny.yaml at 6b9f505, when the run
# key still hashed the params as written): the typed params, held once, must not retrain anything.
RUN_KEYS_BEFORE = {
    "entrodrop": "9632324d0d35e117",
    "entrodrop_gamma@gamma_max=0.05": "5a0d26b1e428cd5e",
    "entrodrop_gamma@gamma_max=0.2": "7231f6423eb4d716",
    "entrodrop_gamma@gamma_max=0.4": "28a11c2b7ad47c50",
    "entrodrop_high": "94dd2a928cd8f11b",
    "entrodrop_online": "7f68b364d9f93e77",
    "entrodrop_static": "f4d998ff234e2348",
    "hidden_dropout@p=0.05": "cae0d55b16c4fc66",
    "hidden_dropout@p=0.1": "06f47676ef3203f8",
    "neftune": "fdafdad11525efce",
    "plain": "f9e356a49cbb997a",
    "token_dropout": "d31aee61c6987170",
    "token_dropout_matched": "4340bf0a71eb20c9",
    "weight_decay@weight_decay=0.1": "5ef6787c0f2dad53",
    "weight_decay@weight_decay=0.5": "db40b5b227d7fda1",
}


def test_run_keys_are_those_of_the_untyped_params():
    from entrodrop_bench.config import run_key

    # The tiny preset's data as when these keys were computed (it has since kept half the target corpus).
    config = load_config(CONFIGS_DIR / "tiny.yaml", ["data.target.max_unique_tokens=null", "data.token_budget=600000"])
    assert {run: run_key(config, run, config.train.seeds[0]) for run in RUN_KEYS_BEFORE} == RUN_KEYS_BEFORE


def test_config_and_regularizer_do_not_import_each_other():
    import subprocess
    import sys

    code = "import sys, entrodrop_bench.regularizer; assert 'entrodrop_bench.config' not in sys.modules, 'cycle'"
    subprocess.run([sys.executable, "-c", code], check=True)


def _field_docs(model) -> list[tuple[str, str | None]]:
    return [(f"{model.__name__}.{name}", info.description) for name, info in model.model_fields.items()]


def test_every_config_field_has_a_docstring():
    """Every field of every core section and of every registered plugin's Config says what it is (shown by
    `entrodrop-bench plugins` and `config --explain`)."""
    import inspect

    from entrodrop_bench import config as core
    from entrodrop_bench.regularizer import REGULARIZERS

    sections = [c for c in vars(core).values() if inspect.isclass(c) and issubclass(c, core.Section) and c is not core.Section]
    plugins = [REGULARIZERS.get(name).Config for name in REGULARIZERS.names()]
    assert len(sections) >= 9 and len(plugins) >= 6
    fields = [f for model in sections + plugins for f in _field_docs(model)]
    assert [name for name, doc in fields if not (doc or "").strip()] == []


def test_config_explain_prints_every_field_with_type_and_docstring(capsys):
    from entrodrop_bench.cli import main

    assert main(["config", str(CONFIGS_DIR / "tiny.yaml"), "train.lr=3e-4", "--explain"]) == 0
    out = capsys.readouterr().out
    assert "train.lr = 0.0003  [float]  Peak learning rate." in out
    assert "data.target.source = 'tiny_math'  [str]  `tiny_math`, `tiny_code`" in out
    assert "runs.entrodrop:  method entrodrop, plugin entrodrop [baselines.entrodrop.EntroDropConfig]; table role proposed" in out
    assert "runs.entrodrop.params.percentile = 0.5  [float]  k of Eq. 2" in out  # a default, typed
    assert "runs.weight_decay@weight_decay=0.5.params.weight_decay = 0.5  [float]" in out
    fields = [line for line in out.splitlines() if " = " in line.split("  [")[0]]
    assert len(fields) > 100 and all(re.match(r"^\S+ = .*  \[.+\]  \S", line) for line in fields)  # value, type, doc
    assert main(["config", str(CONFIGS_DIR / "tiny.yaml")]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["train"]["lr"] == 1e-3


def test_num_fewshot_per_benchmark_and_its_errors():
    """Shots per benchmark (the real presets: as OpenCompass sets them); an int where a benchmark cannot take it,
    or a name that is not a configured lm-eval benchmark, is refused naming the field."""
    config = load_config(CONFIGS_DIR / "qwen3-0.6b-math.yaml")
    ev = config.eval
    assert ev.num_fewshot == {"mmlu": 5, "hellaswag": 10}
    assert (ev.shots("mmlu"), ev.shots("hellaswag"), ev.shots("piqa"), ev.shots("minerva_math")) == (5, 10, None, None)
    assert load_config(CONFIGS_DIR / "qwen3-0.6b-math.yaml", ["eval.num_fewshot={mmlu: 5, gsm8k: 4}"]).eval.shots("gsm8k") is None
    with pytest.raises(ConfigError, match=r"num_fewshot.*5 shots for (gsm8k|minerva_math).*exactly 4 fixed exemplars"):
        load_config(CONFIGS_DIR / "qwen3-0.6b-math.yaml", ["eval.num_fewshot=5"])
    with pytest.raises(ConfigError, match=r"num_fewshot\.humaneval.*code benchmark"):
        load_config(CONFIGS_DIR / "qwen3-0.6b-code.yaml", ["eval.num_fewshot={humaneval: 3}"])
    with pytest.raises(ConfigError, match=r"num_fewshot\.gsm8k.*not in eval.lm_eval_tasks"):
        load_config(CONFIGS_DIR / "qwen3-0.6b-code.yaml", ["eval.num_fewshot={gsm8k: 4}"])
    assert load_config(CONFIGS_DIR / "qwen3-0.6b-code.yaml", ["eval.num_fewshot=2"]).eval.shots("piqa") == 2
