"""Leaderboard: entries from a synthetic store, schema validation with JSON paths, keyed idempotent
publishing, and the static HTML page sorted in a real headless chromium."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import pytest
from helpers import write_prepared
from test_selection import make_config, scores, write_run

from entrodrop_bench.artifacts import (
    ArtifactError,
    LeaderboardEntries,
    LeaderboardEntry,
    leaderboard_json_schema,
)
from entrodrop_bench.errors import DataError, UserError
from entrodrop_bench.paths import LEADERBOARD_SCHEMA, Layout
from entrodrop_bench.report.leaderboard import build_entries, entry_key, publish, validate_file, write_schema
from entrodrop_bench.report.selection import select


def _experiment(tmp_path: Path, entro_math: float = 0.50):
    config = make_config(tmp_path)
    layout = Layout.from_config(config)
    write_run(layout, "plain", 0, [(10, 2.0, scores(0.40, 0.40), 1.0), (20, 4.0, scores(0.44, 0.44), 0.9)])
    write_run(layout, "weight_decay@weight_decay=0.1", 0, [(10, 2.0, scores(0.42, 0.42), 1.0)], params={"weight_decay": 0.1})
    write_run(layout, "weight_decay@weight_decay=0.5", 0, [(10, 2.0, scores(0.41, 0.41), 1.0)], params={"weight_decay": 0.5})
    write_run(layout, "entrodrop", 0, [(10, 2.0, scores(entro_math, entro_math), 1.0)], params={"gamma_max": 0.1})
    return config, layout


def test_entries_carry_everything_a_reader_needs(tmp_path):
    config, layout = _experiment(tmp_path)
    write_prepared(layout, tokenizer_hash="tok1", target_train={"hash": "tt1"}, target_val={"hash": "tv1"}, general={"hash": "g1"})
    select(config, layout)
    typed = build_entries(config, layout)
    assert [e.to_json() for e in LeaderboardEntries.read(layout.leaderboard_entries).entries] == [e.to_json() for e in typed]
    entries = [e.to_json() for e in typed]
    assert entries[0]["provenance"]["data_hashes"] == {"target_train": "tt1", "target_val": "tv1", "general": "g1", "tokenizer": "tok1"}
    by = {e["method"]["name"]: e for e in entries}
    assert set(by) == {"plain", "weight_decay", "entrodrop"}
    wd = by["weight_decay"]
    assert wd["method"]["params"] == {"weight_decay": 0.1} and wd["method"]["config"]["grid"] == {"weight_decay": [0.1, 0.5]}
    assert wd["selection"]["checkpoints"] == [{"seed": 0, "step": 10, "target_epoch": 2.0, "val_loss": 1.0, "trained_at_commit": None}]
    assert wd["scores"]["gsm8k"]["metric"] == "exact_match,strict-match" and wd["scores"]["piqa"]["metric"] == "acc,none"
    assert by["plain"]["selection"]["checkpoints"][0]["step"] == 20
    # relative gain of EntroDrop's math average vs plain: 50/44 - 1
    assert by["entrodrop"]["relative_to_plain_pct"]["math"] == pytest.approx((50 / 44 - 1) * 100, abs=1e-3)
    assert by["plain"]["relative_to_plain_pct"]["math"] is None
    prov = by["entrodrop"]["provenance"]
    assert prov["versions"]["lm_eval"] == "0.4.13" and prov["versions"]["evalplus"]  # recorded, then installed
    assert by["entrodrop"]["backbone"] == {"id": "Qwen/Qwen3-0.6B-Base", "revision": "abc123"}
    assert by["entrodrop"]["key"] == entry_key(config, "entrodrop")


COST = {"steps": 20, "tokens_trained": 20 * 512, "train_flops": 6.0e9, "flops_params": 100_000, "train_wall_s": 7200.0,
        "device": "NVIDIA H100 80GB HBM3", "device_count": 2, "device_hours": 4.0, "sessions": 2}


def test_entries_carry_the_measured_cost_and_the_page_shows_it(tmp_path):
    """Training cost from the run's status, evaluation wall time summed over its stored results; a run trained
    before cost accounting gets nulls, shown as blanks; both validate, as does an older entry without `cost`."""
    from helpers import write_eval_result, write_status

    config, layout = _experiment(tmp_path)
    write_status(layout, "entrodrop", 0, total_steps=10, plugin="entrodrop", params={"gamma_max": 0.1},
                 stats={"masked_fraction": 0.05}, cost=COST)
    for bench, wall in (("gsm8k", 900.0), ("piqa", 900.0)):
        write_eval_result(layout, "entrodrop", 0, 10, bench, 0.5, wall_time_s=wall)
    select(config, layout)
    by = {e.method.name: e.to_json() for e in build_entries(config, layout)}
    cost = by["entrodrop"]["cost"]
    assert cost == {"tokens_trained": 10240, "train_flops": 6.0e9, "train_wall_s": 7200.0, "eval_wall_s": 1800.0,
                    "device": "NVIDIA H100 80GB HBM3", "device_count": 2, "device_hours": 4.5}
    assert by["plain"]["cost"]["tokens_trained"] is None and by["plain"]["cost"]["device_hours"] is None
    old = copy.deepcopy(by["plain"])
    del old["cost"]
    board = tmp_path / "lb.json"
    board.write_text(json.dumps({"schema_version": 1, "updated": "2026-01-01T00:00:00", "entries": [old]}))
    assert validate_file(board) == []
    publish(layout.results_dir, board)
    assert validate_file(board) == []
    page = board.with_suffix(".html").read_text()
    assert "<th scope=\"col\" tabindex=\"0\" data-kind=\"num\">Device-h</th>" in page
    row = next(line for line in page.splitlines() if "/entrodrop/" in line and line.startswith("<tr"))
    assert ">1.02e+04<" in row and ">6e+09<" in row and ">2 x NVIDIA H100 80GB HBM3<" in row and ">4.500<" in row
    bad = json.loads(board.read_text())
    bad["entries"][0]["cost"] = {"tokens_trained": -1}
    board.write_text(json.dumps(bad))
    assert any("cost.tokens_trained" in p for p in validate_file(board))


def test_entries_come_from_the_written_selection_only(tmp_path):
    """`leaderboard build` reads selection.json (never recomputing it) and refuses one that no longer matches the store."""
    config, layout = _experiment(tmp_path)
    with pytest.raises(ArtifactError, match=r"selection\.json does not exist: run `entrodrop-bench select CONFIG`"):
        build_entries(config, layout)
    assert not layout.leaderboard_entries.exists()
    select(config, layout)
    written = layout.selection_file.read_bytes()
    build_entries(config, layout)
    assert layout.selection_file.read_bytes() == written
    write_run(layout, "entrodrop", 0, [(10, 2.0, scores(0.60, 0.60), 1.0)], params={"gamma_max": 0.1})
    with pytest.raises(ArtifactError, match=r"selection\.json is out of date: .*store/entrodrop/seed0/checkpoint-10/gsm8k\.json "
                                            r"changed"):
        build_entries(config, layout)


def test_publishing_no_entries_makes_a_valid_empty_board(tmp_path):
    entries = tmp_path / "leaderboard_entries.json"
    entries.write_text("[]")
    board = tmp_path / "lb.json"
    publish(tmp_path, board)
    assert validate_file(board) == [] and json.loads(board.read_text())["entries"] == []
    assert "0 entries" in board.with_suffix(".html").read_text()


def test_schema_is_documented():
    schema = json.loads(LEADERBOARD_SCHEMA.read_text())
    entry = schema["$defs"]["LeaderboardEntry"]["properties"]

    def documented(prop: dict) -> bool:  # a field of a model type is documented by that model's description
        ref = prop.get("$ref")
        return "description" in prop or (ref is not None and "description" in schema["$defs"][ref.split("/")[-1]])

    undocumented = [k for k, v in entry.items() if not documented(v)]
    assert not undocumented


def test_schema_file_is_generated_from_the_entry_model(tmp_path):
    """results/leaderboard.schema.json is what `entrodrop-bench leaderboard schema` writes from the pydantic model:
    a field added to or renamed in `LeaderboardEntry` without regenerating the file fails here."""
    written = write_schema(tmp_path / "schema.json")
    assert json.loads(written.read_text()) == leaderboard_json_schema(), "the writer writes the model's schema"
    assert LEADERBOARD_SCHEMA.read_text() == written.read_text(), (
        "results/leaderboard.schema.json is stale: run `entrodrop-bench leaderboard schema`")
    entry = leaderboard_json_schema()["$defs"]["LeaderboardEntry"]
    assert set(entry["properties"]) == set(LeaderboardEntry.model_fields)
    assert entry["additionalProperties"] is False


def test_republishing_is_idempotent_and_replaces_by_key(tmp_path):
    config, layout = _experiment(tmp_path)
    select(config, layout)
    build_entries(config, layout)
    board = tmp_path / "board" / "leaderboard.json"
    publish(layout.results_dir, board)
    first_json, first_html = board.read_bytes(), board.with_suffix(".html").read_bytes()
    publish(layout.results_dir, board)
    assert board.read_bytes() == first_json and board.with_suffix(".html").read_bytes() == first_html
    assert validate_file(board) == []
    # new results for the same experiment: same keys, so entries are replaced, not duplicated
    write_run(layout, "entrodrop", 0, [(10, 2.0, scores(0.60, 0.60), 1.0)], params={"gamma_max": 0.1})
    select(config, layout)
    build_entries(config, layout)
    publish(layout.results_dir, board)
    doc = json.loads(board.read_text())
    assert len(doc["entries"]) == 3
    entro = next(e for e in doc["entries"] if e["method"]["name"] == "entrodrop")
    assert entro["domain_averages"]["math"]["mean"] == pytest.approx(60.0)
    # another experiment adds its own entries beside these
    other = make_config(tmp_path / "other", name="other", preset="tiny-other")
    olayout = Layout.from_config(other)
    write_run(olayout, "plain", 0, [(10, 2.0, scores(0.3, 0.3), 1.0)])
    select(other, olayout)
    build_entries(other, olayout)
    publish(olayout.results_dir, board)
    keys = [e["key"] for e in json.loads(board.read_text())["entries"]]
    assert len(keys) == 4 and keys == sorted(keys)


def test_validation_reports_every_violation_with_its_path(tmp_path):
    config, layout = _experiment(tmp_path)
    select(config, layout)
    build_entries(config, layout)
    board = tmp_path / "leaderboard.json"
    publish(layout.results_dir, board)
    good = json.loads(board.read_text())
    bad = copy.deepcopy(good)
    bad["entries"][0]["seeds"] = "zero"
    bad["entries"][1]["selection"]["rule"] = "best_test_score"
    del bad["entries"][2]["provenance"]["git_commit"]
    bad["entries"][2]["scores"]["gsm8k"]["mean"] = "high"
    bad["entries"].append(copy.deepcopy(good["entries"][0]))
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps(bad))
    problems = validate_file(broken)
    paths = {p.split(":")[0] for p in problems}
    assert {"$.entries[0].seeds", "$.entries[1].selection.rule", "$.entries[2].provenance",
            "$.entries[2].scores.gsm8k.mean", "$.entries[3].key"} <= paths
    assert any("git_commit" in p for p in problems) and any("duplicate key" in p for p in problems)
    bad_date = copy.deepcopy(good)
    bad_date["updated"] = "yesterday"
    broken.write_text(json.dumps(bad_date))
    assert [p.split(":")[0] for p in validate_file(broken)] == ["$.updated"]
    not_json = tmp_path / "not.json"
    not_json.write_text("{")
    assert validate_file(not_json)[0].startswith("$: ")
    # publishing into an invalid leaderboard refuses and leaves it untouched
    broken.write_text(json.dumps(bad))
    with pytest.raises(DataError, match=r"\$\.entries\[0\]\.seeds"):
        publish(layout.results_dir, broken)
    assert json.loads(broken.read_text()) == bad
    with pytest.raises(UserError, match="leaderboard_entries.json"):
        publish(tmp_path / "nowhere", board)


def _chromium() -> str | None:
    return next((p for p in (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")) if p), None)


@pytest.mark.browser
def test_html_page_loads_and_sorts_in_headless_chromium(tmp_path):
    browser_path = _chromium()
    if browser_path is None:
        pytest.skip("no chromium binary (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    config, layout = _experiment(tmp_path)
    select(config, layout)
    build_entries(config, layout)
    board = tmp_path / "leaderboard.json"
    publish(layout.results_dir, board)
    page_file = board.with_suffix(".html")
    requests, errors = [], []
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=browser_path, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.on("request", lambda r: requests.append(r.url))
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(page_file.as_uri())
            headers = page.locator("#leaderboard thead th").all_text_contents()
            method_col, total_col = headers.index("Method"), headers.index("Total avg")

            def column(i: int) -> list[str]:
                return page.locator(f"#leaderboard tbody tr td:nth-child({i + 1})").all_text_contents()

            assert sorted(column(method_col)) == ["+EntroDrop", "+Weight Decay", "Baseline"]
            page.locator("#leaderboard thead th").nth(total_col).click()
            ascending = [float(x) for x in column(total_col)]
            assert ascending == sorted(ascending) and column(method_col)[0] == "+Weight Decay"
            page.locator("#leaderboard thead th").nth(total_col).click()
            assert [float(x) for x in column(total_col)] == sorted(ascending, reverse=True)
            assert column(method_col)[0] == "+EntroDrop"
            assert page.locator("#leaderboard thead th").nth(total_col).get_attribute("aria-sort") == "descending"
            page.locator("#leaderboard thead th").nth(method_col).click()
            assert column(method_col) == sorted(column(method_col), key=str.lower)
        finally:
            browser.close()
    assert errors == []
    assert all(u.startswith("file://") for u in requests)  # no CDN, no server
