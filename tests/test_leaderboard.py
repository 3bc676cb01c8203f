"""Leaderboard: entries from a synthetic store, schema validation with JSON paths, keyed idempotent
publishing (refusing a modified work tree; an experiment's own leaderboard holding exactly its current entries),
and the static results page filtered, sorted and measured in a real headless chromium."""

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
from entrodrop_bench.report import leaderboard as lb
from entrodrop_bench.report.leaderboard import (
    build_entries,
    entry_key,
    publish,
    render_page,
    validate_file,
    write_schema,
)
from entrodrop_bench.report.screenshot import chromium
from entrodrop_bench.report.selection import select

CLEAN, DIRTY = "0123456789abcdef0123456789abcdef01234567", "0123456789abcdef0123456789abcdef01234567-dirty"


@pytest.fixture(autouse=True)
def clean_tree(monkeypatch):
    """Entries are built and published as from a clean checkout, whatever state this one is in; the tests of the
    modified-tree rules set the commit themselves."""
    monkeypatch.setattr(lb, "git_commit", lambda: CLEAN)


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


def _entry_html(page: str, key: str) -> str:
    """One entry's rows (its table row and breakdown) in a rendered page."""
    body = page[page.index('<tbody class="entry" data-key="' + key):]
    return body[:body.index("</td></tr>\n</tbody>")]


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
    assert ">Device-h</th>" in page
    body = _entry_html(page, by["entrodrop"]["key"])
    # device hours in the row; the breakdown has the rest of the cost
    assert ">4.50</td>" in body and "<dd>1.02e+04</dd>" in body and "<dd>6e+09</dd>" in body
    assert "<dd>2 x NVIDIA H100 80GB HBM3</dd>" in body and "<dd>2.00</dd>" in body  # train wall 7200 s
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
    assert "0 entries" in board.with_suffix(".html").read_text() and "No entries yet" in board.with_suffix(".html").read_text()


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


def test_publishing_rewrites_the_entries_it_leaves_unchanged_as_they_were_read(tmp_path):
    """publish works on the typed entries, but an entry it neither replaces nor supersedes goes back to disk as it
    was read, not as the model would write it (here an integer where the model holds a float)."""
    config, layout = _experiment(tmp_path)
    select(config, layout)
    build_entries(config, layout)
    board = tmp_path / "board" / "leaderboard.json"
    publish(layout.results_dir, board)
    doc = json.loads(board.read_text())
    doc["entries"][0]["total_average"]["std"] = 0  # valid, and the model would write it back as 0.0
    board.write_text(json.dumps(doc, indent=2) + "\n")
    assert validate_file(board) == []
    other = make_config(tmp_path / "other", name="other", preset="tiny-other")
    olayout = Layout.from_config(other)
    write_run(olayout, "plain", 0, [(10, 2.0, scores(0.3, 0.3), 1.0)])
    select(other, olayout)
    build_entries(other, olayout)
    publish(olayout.results_dir, board)
    after = json.loads(board.read_text())
    kept = next(e for e in after["entries"] if e["key"] == doc["entries"][0]["key"])
    assert kept == doc["entries"][0] and type(kept["total_average"]["std"]) is int
    assert len(after["entries"]) == len(doc["entries"]) + 1


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


# --------------------------------------------------------------------------- modified work tree
def test_publishing_refuses_a_modified_work_tree_unless_allowed(tmp_path, monkeypatch, capsys):
    """Entries built from a modified tree, or a publish from one, are refused before anything is written; with
    --allow-dirty they are published and say so, in the JSON and on the page."""
    from entrodrop_bench import cli

    config, layout = _experiment(tmp_path)
    select(config, layout)
    monkeypatch.setattr(lb, "git_commit", lambda: DIRTY)
    build_entries(config, layout)
    monkeypatch.setattr(lb, "git_commit", lambda: CLEAN)
    board = tmp_path / "board" / "leaderboard.json"
    with pytest.raises(UserError, match=r"entries were built from a modified work tree \(0123.*-dirty\).*--allow-dirty"):
        publish(layout.results_dir, board)
    assert not board.exists() and not board.with_suffix(".html").exists()
    build_entries(config, layout)  # rebuilt from a clean tree, but published from a modified one
    monkeypatch.setattr(lb, "git_commit", lambda: DIRTY)
    with pytest.raises(UserError, match=r"this work tree \(0123.*-dirty\) has changes to tracked files"):
        publish(layout.results_dir, board)
    assert cli.main(["leaderboard", "publish", str(layout.results_dir), "--into", str(board), "--allow-dirty"]) == 0
    assert "marked as from a modified work tree" in capsys.readouterr().out
    doc = json.loads(board.read_text())
    assert {e["provenance"]["modified_work_tree"] for e in doc["entries"]} == {True} and validate_file(board) == []
    page = board.with_suffix(".html").read_text()
    assert 'class="badge warn"' in _entry_html(page, doc["entries"][0]["key"])
    # from a clean tree: published as is, and the page marks nothing
    monkeypatch.setattr(lb, "git_commit", lambda: CLEAN)
    publish(layout.results_dir, board)
    doc = json.loads(board.read_text())
    assert {e["provenance"]["modified_work_tree"] for e in doc["entries"]} == {False}
    page = board.with_suffix(".html").read_text()
    assert 'class="badge warn"' not in page[page.index("<section"):]


def test_git_commit_ignores_changes_to_results(tmp_path):
    """A run rewrites results/ in the checkout: that alone does not make the tree modified; a code change does."""
    import subprocess

    from entrodrop_bench.provenance import from_modified_tree, git_commit

    if shutil.which("git") is None:
        pytest.skip("no git binary")
    repo = tmp_path / "repo"
    (repo / "results").mkdir(parents=True)
    (repo / "results" / "table.md").write_text("old\n")
    (repo / "code.py").write_text("x = 1\n")

    def git(*args: str) -> None:
        subprocess.run(["git", "-c", "user.email=t@t", "-c", "user.name=t", *args], cwd=repo, check=True, capture_output=True)

    git("init", "-q")
    git("add", ".")
    git("commit", "-qm", "init")
    (repo / "results" / "table.md").write_text("new\n")
    (repo / "untracked.py").write_text("y = 2\n")
    commit = git_commit(repo)
    assert commit is not None and len(commit) == 40 and not from_modified_tree(commit)
    (repo / "code.py").write_text("x = 2\n")
    assert git_commit(repo) == commit + "-dirty" and from_modified_tree(git_commit(repo))
    (tmp_path / "plain").mkdir()
    assert git_commit(tmp_path / "plain") is None or not (tmp_path / "plain" / ".git").exists()


def test_make_checks_the_tree_before_any_compute(monkeypatch, capsys):
    """`make demo` / `make study` run this first: a modified tree stops them before training, unless allowed."""
    from entrodrop_bench import provenance

    monkeypatch.setattr(provenance, "git_commit", lambda: DIRTY)
    assert provenance.main([]) == 1 and "ALLOW_DIRTY=1" in capsys.readouterr().err
    assert provenance.main(["--allow-dirty"]) == 0
    monkeypatch.setattr(provenance, "git_commit", lambda: CLEAN)
    assert provenance.main([]) == 0


# --------------------------------------------------------------------------- current entries, history
def test_own_leaderboard_holds_exactly_the_current_entries_and_the_shared_one_keeps_history(tmp_path):
    config, layout = _experiment(tmp_path)
    select(config, layout)
    build_entries(config, layout)
    other = make_config(tmp_path / "other", name="other", preset="tiny-other")
    olayout = Layout.from_config(other)
    write_run(olayout, "plain", 0, [(10, 2.0, scores(0.3, 0.3), 1.0)])
    write_run(olayout, "weight_decay@weight_decay=0.1", 0, [(10, 2.0, scores(0.3, 0.3), 1.0)], params={"weight_decay": 0.1})
    select(other, olayout)
    build_entries(other, olayout)
    own, shared = layout.leaderboard_file, tmp_path / "shared" / "leaderboard.json"
    assert own == layout.results_dir / "leaderboard.json"
    for board in (own, shared):
        publish(layout.results_dir, board)
    publish(olayout.results_dir, shared)
    before = {e["key"] for e in json.loads(own.read_text())["entries"]}
    old_wd = entry_key(config, "weight_decay")
    assert old_wd in before and len(before) == 3
    # the config changes: weight decay gone, EntroDrop's grid widened (a new key)
    methods = {"plain": {"plugin": "plain"},
               "entrodrop": {"plugin": "entrodrop", "params": {"gamma_max": 0.1}, "grid": {"gamma_max": [0.1]}}}
    changed = make_config(tmp_path, methods=methods)
    select(changed, layout)
    now = {e.key for e in build_entries(changed, layout)}
    assert entry_key(config, "entrodrop") not in now and entry_key(changed, "plain") in now
    done = publish(layout.results_dir, own)
    assert {e["key"] for e in json.loads(own.read_text())["entries"]} == now
    assert sorted(done.removed) == sorted(before - now) and done.superseded == []
    done = publish(layout.results_dir, shared)
    doc = json.loads(shared.read_text())
    by_key = {e["key"]: e for e in doc["entries"]}
    assert sorted(done.superseded) == sorted(before - now) and done.removed == []
    assert {k for k, e in by_key.items() if "superseded" in e} == before - now
    assert all(by_key[k]["superseded"]["date"] == doc["updated"] for k in before - now)
    assert all("superseded" not in e for e in doc["entries"] if e["experiment"] == "other"), "another experiment's"
    assert validate_file(shared) == []
    first = shared.read_bytes()
    publish(layout.results_dir, shared)
    assert shared.read_bytes() == first, "superseded once, never re-dated"
    page = shared.with_suffix(".html").read_text()
    assert page.count('<tbody class="entry superseded') == len(before - now) and "show 2 superseded" in page


# --------------------------------------------------------------------------- the results page
def test_entries_carry_validation_curves_and_the_page_draws_them(tmp_path):
    config, layout = _experiment(tmp_path)
    select(config, layout)
    by = {e.method.name: e.to_json() for e in build_entries(config, layout)}
    assert by["plain"]["val_curve"] == [{"seed": 0, "step": [0, 10, 20], "target_epoch": [0.0, 2.0, 4.0],
                                         "loss": [2.0, 1.0, 0.9]}]
    assert by["weight_decay"]["val_curve"][0]["step"] == [0, 10]  # the selected grid point's run
    board = tmp_path / "lb.json"
    publish(layout.results_dir, board)
    page = board.with_suffix(".html").read_text()
    panels = page.split('<figure class="panel"')[1:]
    assert len(panels) == 3
    entro = next(p for p in panels if "+EntroDrop" in p)
    assert entro.count('class="seed"') == 1 and entro.count('class="ref"') == 1 and 'class="pick"' in entro
    # an entry without curves (built before they were kept) still renders, with a note
    doc = json.loads(board.read_text())
    for e in doc["entries"]:
        del e["val_curve"]
    board.write_text(json.dumps(doc))
    assert validate_file(board) == []
    assert "No validation-loss curves in these entries" in render_page(board).read_text()
    from entrodrop_bench import cli

    board.with_suffix(".html").unlink()
    assert cli.main(["leaderboard", "render", str(board)]) == 0 and board.with_suffix(".html").is_file()
    board.write_text("{}")
    with pytest.raises(DataError, match=r"lb\.json is not a valid leaderboard"):
        render_page(board)


def _page_experiments(tmp_path: Path) -> Path:
    """A shared leaderboard of two experiments (two presets, backbones and selection rules), the first with a
    planted significant effect in Table 1 and a Table 3 row, one entry superseded."""
    import numpy as np
    from test_comparisons import _baseline_items, _with_known_gain, _write

    methods = {"plain": {"plugin": "plain"}, "weight_decay": {"plugin": "weight_decay"},
               "entrodrop": {"plugin": "entrodrop", "params": {"gamma_max": 0.1}},
               "entrodrop_high": {"plugin": "entrodrop", "params": {"gamma_max": 0.1, "target": "high"}, "table": "targeting"}}
    config = make_config(tmp_path / "a", methods=methods)
    layout = Layout.from_config(config)
    base, better, _ = _with_known_gain(_baseline_items(np.random.default_rng(0)), solved=30)
    _write(layout, "plain", 0, base)
    _write(layout, "weight_decay", 0, base)
    _write(layout, "entrodrop", 0, better, params={"gamma_max": 0.1})
    _write(layout, "entrodrop_high", 0, base, params={"gamma_max": 0.1, "target": "high"})
    board = tmp_path / "board" / "leaderboard.json"
    select(config, layout)
    build_entries(config, layout)
    publish(layout.results_dir, board)
    del methods["entrodrop_high"]  # republished without it: superseded in the shared board
    config = make_config(tmp_path / "a", methods=methods)
    select(config, layout)
    build_entries(config, layout)
    publish(layout.results_dir, board)
    other = make_config(tmp_path / "b", name="other", preset="tiny-other", selection="val_loss")
    other.model.name_or_path = "other/backbone"
    olayout = Layout.from_config(other)
    for run, params in (("plain", {}), ("weight_decay@weight_decay=0.1", {"weight_decay": 0.1}),
                        ("weight_decay@weight_decay=0.5", {"weight_decay": 0.5}), ("entrodrop", {"gamma_max": 0.1})):
        write_run(olayout, run, 0, [(10, 2.0, scores(0.3, 0.3), 1.0), (20, 4.0, scores(0.35, 0.3), 0.8)], params=params)
    select(other, olayout)
    build_entries(other, olayout)
    publish(olayout.results_dir, board)
    return board.with_suffix(".html")


@pytest.mark.browser
def test_results_page_filters_sorts_and_fits_in_headless_chromium(tmp_path):
    browser_path = chromium()
    if browser_path is None:
        pytest.skip("no chromium binary (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is in the dev extra")
    page_file = _page_experiments(tmp_path)
    requests, errors = [], []
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=browser_path, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.set_default_timeout(10_000)
            page.on("request", lambda r: requests.append(r.url))
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(page_file.as_uri())

            def visible(selector: str) -> list[str]:
                return page.locator(f"{selector}:visible").all_text_contents()

            def titles() -> list[str]:
                return [t.split(" (")[0] for t in visible("section.table h2")]

            assert titles() == ["Table 1: main comparison", "Table 1: main comparison"]
            assert page.locator("#shown").text_content() == "showing 6 of 7 entries"  # one superseded, hidden
            # the mark: only where the test supports a difference, explained on the page; one seed compares two
            # checkpoints, so its mark is the item-level ‡, not † (over seeds and items)
            first = page.locator("section.table", has=page.locator("h2", has_text="(synthetic)")).first
            entro = first.locator("tbody.entry", has_text="+EntroDrop")
            assert entro.locator("td.diff .mark").first.text_content() == "‡"
            assert "up" in entro.locator("td.diff").first.get_attribute("class")
            wd = first.locator("tbody.entry", has_text="+Weight Decay").locator("tr.main").text_content()
            assert "†" not in wd and "‡" not in wd
            legend = page.locator(".legend").text_content()
            assert "Holm-adjusted p-value is below 0.05" in legend
            assert "†: over training seeds and test items" in legend and "‡: item-level only" in legend
            assert "* after an interval: one seed, so the interval is over the test items only" in legend
            assert "MDE (each table's last row)" in legend
            # each Δ column's minimum detectable effect, under the table
            mde = first.locator("tfoot tr.mde")
            assert mde.is_visible() and mde.locator("td.mde").first.text_content().startswith("±")
            assert entro.locator("td.num .ci").first.text_content().endswith("]*")
            # filters
            page.select_option("select[name=preset]", "tiny-other")
            assert titles() == ["Table 1: main comparison"] and "other" in visible("section.table h2")[0]
            assert page.locator("#shown").text_content() == "showing 3 of 7 entries"
            page.select_option("select[name=preset]", "")
            page.select_option("select[name=backbone]", "other/backbone@abc123")
            assert "other" in visible("section.table h2")[0] and len(titles()) == 1
            page.select_option("select[name=backbone]", "")
            page.select_option("select[name=rule]", "target_avg")
            assert len(titles()) == 1 and "synthetic" in visible("section.table h2")[0]
            page.select_option("select[name=rule]", "")
            page.select_option("select[name=table]", "table3")
            assert titles() == []  # Table 3's only row is superseded
            page.check("input[name=superseded]")
            assert titles() == ["Table 3: which tokens to mask"]
            assert visible("section.table tbody.entry td.method .label") == ["Baseline", "+EntroDrop (entrodrop_high)"]
            assert page.locator("figure.panel:visible").count() == 2
            page.select_option("select[name=table]", "")
            page.uncheck("input[name=superseded]")
            # sorting: by Δ math (blanks last both ways), then by method
            heads = first.locator("thead th")
            col = heads.all_text_contents().index("Δ math")

            def labels() -> list[str]:
                return first.locator("tbody.entry td.method .label").all_text_contents()

            heads.nth(col).click()
            assert labels() == ["+Weight Decay", "+EntroDrop", "Baseline"]
            heads.nth(col).click()
            assert labels() == ["+EntroDrop", "+Weight Decay", "Baseline"]
            assert heads.nth(col).get_attribute("aria-sort") == "descending"
            heads.nth(0).click()
            assert labels() == ["+EntroDrop", "+Weight Decay", "Baseline"]
            heads.nth(0).click()
            assert labels() == ["Baseline", "+Weight Decay", "+EntroDrop"]
            # the breakdown and provenance open on demand
            detail = entro.locator("tr.detail")
            assert not detail.is_visible()
            entro.locator("button.open").click()
            assert detail.is_visible() and "gsm8k" in detail.text_content()
            assert not entro.locator("details.prov dl").is_visible()
            entro.locator("details.prov summary").click()
            assert entro.locator("details.prov dl").is_visible() and "Config hash" in detail.text_content()
            # everything open: no horizontal overflow at 1400 px, nor at 800 px
            page.check("input[name=superseded]")
            for button in page.locator("tbody.entry button.open[aria-expanded=false]").all():
                if button.is_visible():
                    button.click()
            page.evaluate("document.querySelectorAll('details.prov').forEach(d => d.open = true)")
            for width in (1400, 800):
                page.set_viewport_size({"width": width, "height": 900})
                scroll, client = page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
                assert scroll <= client, f"horizontal overflow at {width} px: {scroll} > {client}"
        finally:
            browser.close()
    assert errors == []
    assert requests and all(u.startswith("file://") for u in requests)  # no CDN, no server
    from entrodrop_bench.report.screenshot import screenshot

    png = screenshot(page_file, tmp_path / "shot.png")
    head = png.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and int.from_bytes(head[16:20], "big") == 1400
