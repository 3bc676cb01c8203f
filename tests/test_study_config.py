"""`configs/tiny-study.yaml` (`make study`) is tiny.yaml over three seeds: nothing else differs, so every seed-0 run
has the demo's run key and the study reuses the demo's runs, world and caches in the shared runs folder."""

from __future__ import annotations

from entrodrop_bench.config import load_config, run_key, run_names
from entrodrop_bench.paths import CONFIGS_DIR, Layout


def _without_study_keys(data: dict) -> dict:
    data = {k: v for k, v in data.items() if k != "name"}
    data["train"] = {k: v for k, v in data["train"].items() if k != "seeds"}
    data["output"] = {k: v for k, v in data["output"].items() if k != "results_dir"}
    return data


def test_study_is_the_tiny_preset_over_three_seeds():
    demo, study = load_config(CONFIGS_DIR / "tiny.yaml"), load_config(CONFIGS_DIR / "tiny-study.yaml")
    assert study.train.seeds == [0, 1, 2] and demo.train.seeds == [0]
    assert study.name != demo.name
    assert Layout.from_config(study).results_dir != Layout.from_config(demo).results_dir
    assert _without_study_keys(study.model_dump(mode="json")) == _without_study_keys(demo.model_dump(mode="json"))


def test_study_shares_the_demos_runs_folder_and_run_keys():
    demo, study = load_config(CONFIGS_DIR / "tiny.yaml"), load_config(CONFIGS_DIR / "tiny-study.yaml")
    assert Layout.from_config(study).runs_dir == Layout.from_config(demo).runs_dir
    assert run_names(study) == run_names(demo)
    for run in run_names(demo):  # seed 0 trained by the demo is the study's seed 0, not retrained
        assert run_key(study, run, 0) == run_key(demo, run, 0)


def test_demo_is_the_tiny_presets_table1_sharing_its_runs():
    """`make demo` (configs/tiny-demo.yaml) trains a subset of tiny.yaml's runs, with their run keys, into the same
    runs folder: every method of the main table (Table 1) is there, so the study reuses the demo's runs as seed 0."""
    demo, tiny, study = (load_config(CONFIGS_DIR / f) for f in ("tiny-demo.yaml", "tiny.yaml", "tiny-study.yaml"))
    assert demo.train.seeds == [0]
    assert set(run_names(demo)) < set(run_names(tiny)) == set(run_names(study))
    main_table = {m for m, spec in tiny.methods.items() if spec.table in (None, "main")}
    assert {run_names(demo)[r][0] for r in run_names(demo)} == main_table
    assert Layout.from_config(demo).runs_dir == Layout.from_config(tiny).runs_dir
    assert Layout.from_config(demo).results_dir == Layout.from_config(tiny).results_dir
    for run in run_names(demo):
        assert run_key(demo, run, 0) == run_key(tiny, run, 0) == run_key(study, run, 0)
    without_methods = [{k: v for k, v in c.model_dump(mode="json").items() if k != "methods"} for c in (demo, tiny)]
    assert without_methods[0] == without_methods[1]
