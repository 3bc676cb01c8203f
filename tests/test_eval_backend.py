"""`eval.backend: hf | vllm` (issue 15, point 3).

Here (no vllm, no GPU): the field's checks, the backend in each result's identity and provenance, and which
model class and arguments each code path asks for, through stand-ins for vLLM that generate with the HF model.
Those stand-ins test this project's plumbing only, not vLLM. The parity test at the end runs real vLLM against
HF on a tiny-preset model, and skips where vllm or a CUDA device is missing.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from importlib.machinery import ModuleSpec
from pathlib import Path

import pytest
import torch
from test_eval_lm_eval import eval_setup, make_checkpoint  # noqa: F401 - fixture used below

from entrodrop_bench.artifacts import EvalResult
from entrodrop_bench.config import load_config
from entrodrop_bench.errors import ConfigError
from entrodrop_bench.evaluate import vllm_backend
from entrodrop_bench.evaluate.benchmarks import generates, generation_backend, task_config_hash
from entrodrop_bench.paths import PROJECT_ROOT, Layout

VLLM_INSTALLED = importlib.util.find_spec("vllm") is not None


def _with_backend(config, backend: str, **fields):
    return config.model_copy(update={"eval": config.eval.model_copy(update={"backend": backend, **fields})})


def _fake_vllm_module(monkeypatch) -> types.ModuleType:
    """A module object named vllm, enough for `find_spec` and `from vllm import SamplingParams`."""
    fake = types.ModuleType("vllm")
    fake.__spec__ = ModuleSpec("vllm", None)

    class SamplingParams:
        def __init__(self, **kwargs):
            self.kwargs = kwargs

    fake.SamplingParams = SamplingParams
    monkeypatch.setitem(sys.modules, "vllm", fake)
    return fake


# --------------------------------------------------------------------------- the field
def test_backend_is_a_typed_field_checked_at_load(tmp_path):
    tiny = PROJECT_ROOT / "configs" / "tiny.yaml"
    runs = [f"output.runs_dir={tmp_path / 'runs'}", f"output.results_dir={tmp_path / 'results'}"]
    assert load_config(tiny, runs).eval.backend == "hf"
    with pytest.raises(ConfigError, match=r"eval\.backend"):
        load_config(tiny, [*runs, "eval.backend=tpu"])
    with pytest.raises(ConfigError, match=r"eval\.workers"):  # two engines cannot each take 85% of one GPU
        load_config(tiny, [*runs, "eval.backend=vllm", "eval.workers=2"])
    # Loading never needs vllm or a GPU: select, tables, plan and status read such a config anywhere.
    config = load_config(tiny, [*runs, "eval.backend=vllm", "eval.workers=2", "eval.vllm_gpu_memory_utilization=0.4"])
    assert config.eval.backend == "vllm" and config.eval.workers == 2


@pytest.mark.skipif(VLLM_INSTALLED, reason="vllm is installed here: there is no missing package to refuse")
def test_vllm_without_vllm_is_refused_before_any_work_naming_the_field(mini_config, tmp_path):
    from entrodrop_bench import pipeline
    from entrodrop_bench.evaluate.stage import evaluate_experiment

    config = mini_config(eval={"backend": "vllm"})
    layout = Layout.from_config(config)
    world = {"tiny_math": tmp_path / "tiny_math.jsonl"}
    world["tiny_math"].write_text('{"question": "1 + 1?", "answer": "#### 2"}\n')
    for check in (lambda: pipeline.preflight(config), lambda: pipeline.preflight(config, evaluates_here=False),
                  lambda: evaluate_experiment(config, layout, world_benchmarks=world, progress=False)):
        with pytest.raises(ConfigError, match=r"eval\.backend: 'vllm' cannot run here: the vllm package is not "
                                              r"installed.*pip install -e '\.\[vllm\]'"):
            check()
    assert not layout.runs_dir.exists()  # nothing written
    pipeline.preflight(mini_config())  # hf needs nothing


def test_vllm_without_a_gpu_is_refused_where_it_would_evaluate(mini_config, monkeypatch):
    from entrodrop_bench import pipeline

    _fake_vllm_module(monkeypatch)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    config = mini_config(eval={"backend": "vllm"})
    with pytest.raises(ConfigError, match=r"eval\.backend: 'vllm' cannot run here: no CUDA device"):
        pipeline.preflight(config)
    pipeline.preflight(config, evaluates_here=False)  # launch from a login node: the jobs check their GPU


# --------------------------------------------------------------------------- identity and provenance
def test_backend_enters_the_identity_of_generated_results_only():
    assert generates("tiny_math") and generates("tiny_code") and generates("gsm8k") and generates("livecodebench")
    assert not generates("tiny_general") and not generates("hellaswag") and not generates("arc_easy")
    assert generates("mmlu")  # a group: no one task YAML to read, so counted as generating (re-evaluated on a switch)
    assert generation_backend("tiny_math", "vllm") == "vllm" and generation_backend("tiny_general", "vllm") == "hf"
    settings = {"limit": 4, "num_fewshot": 0, "max_gen_toks": 64}
    hf = task_config_hash("tiny_math", None, **settings)
    assert task_config_hash("tiny_math", None, **settings, backend="hf") == hf == ("c60f81892a4a3a27", "1.0")  # unchanged
    assert task_config_hash("tiny_math", None, **settings, backend="vllm")[0] != hf[0]
    assert task_config_hash("tiny_general", None, **settings, backend="vllm") == task_config_hash("tiny_general", None, **settings)


def test_provenance_backend_defaults_to_hf_for_older_results(tmp_path):
    from helpers import eval_result

    old = eval_result("plain", 0, 4, "tiny_math", 0.5)
    data = old.model_dump(mode="json")
    data["provenance"].pop("backend", None)
    path = tmp_path / "r.json"
    EvalResult.model_validate(data).write(path)
    assert EvalResult.read(path).provenance.backend == "hf"


# --------------------------------------------------------------------------- code paths, with stand-ins for vLLM
class _RecordingVLLM:
    """Stands in for lm-eval's vLLM model class: records its constructor arguments and answers generate_until
    with lm-eval's HF model on the same folder (so its answers are HF's, and any difference is the plumbing's)."""

    made: list[dict] = []
    events: list[str] = []

    def __init__(self, **kwargs):
        from lm_eval.models.huggingface import HFLM

        type(self).made.append(kwargs)
        type(self).events.append("vllm up")
        self._hf = HFLM(pretrained=kwargs["pretrained"], batch_size=4, device="cpu")
        self.model = _HFBackedLLM(self._hf.model, self._hf.tokenizer)  # the engine (`LLM`) code generation uses

    def generate_until(self, requests, disable_tqdm=False):
        return self._hf.generate_until(requests, disable_tqdm=disable_tqdm)

    def loglikelihood(self, requests, disable_tqdm=False):
        raise AssertionError("loglikelihood requests must stay on the HF model")

    loglikelihood_rolling = loglikelihood


class _HFBackedLLM:
    """Stands in for vllm.LLM: greedy HF decoding of each prompt's token ids alone, to `max_tokens` or eos."""

    def __init__(self, model, tokenizer):
        self.model, self.tok, self.calls = model, tokenizer, []
        self.llm_engine = types.SimpleNamespace(model_config=types.SimpleNamespace(max_model_len=10_000))

    def generate(self, prompts, params, use_tqdm=True):
        self.calls.append((prompts, params.kwargs))
        outs = []
        for p in prompts:
            ids = torch.tensor([p["prompt_token_ids"]])
            with torch.no_grad():
                gen = self.model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                          max_new_tokens=params.kwargs["max_tokens"], pad_token_id=self.tok.pad_token_id,
                                          eos_token_id=self.tok.eos_token_id)
            text = self.tok.decode(gen[0, ids.shape[1]:], skip_special_tokens=True)
            outs.append(types.SimpleNamespace(outputs=[types.SimpleNamespace(text=text)]))
        return outs


@pytest.fixture
def recording_vllm(monkeypatch):
    _RecordingVLLM.made, _RecordingVLLM.events = [], []
    monkeypatch.setattr(vllm_backend, "lm_eval_vllm_class", lambda: _RecordingVLLM)
    monkeypatch.setattr(vllm_backend, "check_backend", lambda ev, need_device=True: None)
    real_release = vllm_backend.release

    def release(lm):
        _RecordingVLLM.events.append("vllm down")
        real_release(lm)

    monkeypatch.setattr(vllm_backend, "release", release)
    return _RecordingVLLM


def test_lm_eval_registers_its_vllm_class_under_the_name_asked_for():
    from lm_eval.models import MODEL_MAPPING

    assert MODEL_MAPPING[vllm_backend.LM_EVAL_MODEL] == "lm_eval.models.vllm_causallms:VLLM"


def test_vllm_backend_routes_generation_to_one_engine_per_checkpoint_and_records_it(eval_setup, mini_assets,  # noqa: F811
                                                                                   recording_vllm, monkeypatch):
    from entrodrop_bench.evaluate import stage
    from entrodrop_bench.evaluate.stage import evaluate_experiment
    from entrodrop_bench.evaluate.store import read_result

    make, world, _ = eval_setup
    config, layout = make(["tiny_general", "tiny_math"])
    ckpt = make_checkpoint(mini_assets["model"], layout, step=4)
    assert evaluate_experiment(config, layout, world_benchmarks=world, progress=False)["evaluated"] == 2
    hf_math = read_result(layout, "plain", 0, 4, "tiny_math")
    assert hf_math.provenance.backend == "hf" and "vllm" not in hf_math.provenance.versions

    real_load = stage._Loaded.model_and_tokenizer

    def load(self):
        fresh = self._model is None
        out = real_load(self)
        if fresh:
            recording_vllm.events.append("hf up")
        return out

    monkeypatch.setattr(stage._Loaded, "model_and_tokenizer", load)
    vllm = _with_backend(config, "vllm", vllm_max_model_len=256)
    make_checkpoint(mini_assets["model"], layout, step=8)
    summary = evaluate_experiment(vllm, layout, world_benchmarks=world, progress=False)
    # Checkpoint 4: tiny_math's identity changed with the backend (re-evaluated); tiny_general is scored by HF
    # under either backend, so its result stands. Checkpoint 8: both.
    assert (summary["evaluated"], summary["skipped"], summary["failed"]) == (3, 1, 0), summary
    assert recording_vllm.made == [
        {"pretrained": str(ckpt), "dtype": "float32", "batch_size": "auto", "max_gen_toks": 12, "seed": 1234,
         "gpu_memory_utilization": 0.85, "max_model_len": 256},
        {"pretrained": str(layout.checkpoint_dir("plain", 0, 8)), "dtype": "float32", "batch_size": "auto",
         "max_gen_toks": 12, "seed": 1234, "gpu_memory_utilization": 0.85, "max_model_len": 256},
    ]
    # One engine per checkpoint, generation first, released before the HF model loads and before the next checkpoint.
    assert recording_vllm.events == ["vllm up", "vllm down", "vllm up", "vllm down", "hf up"]
    v_math = read_result(layout, "plain", 0, 4, "tiny_math")
    assert v_math.provenance.backend == "vllm" and "vllm" in v_math.provenance.versions
    assert v_math.provenance.task_config_hash != hf_math.provenance.task_config_hash
    assert v_math.items.ids == hf_math.items.ids and v_math.items.scores == hf_math.items.scores  # HF's answers
    assert read_result(layout, "plain", 0, 8, "tiny_general").provenance.backend == "hf"
    # Each engine has its own request cache (lm-eval's keys ignore the model).
    caches = sorted(p.name for p in (layout.eval_work_dir("plain", 0, 4) / "lm_cache").glob("*.db"))
    assert len(caches) == 2 and any("-vllm" in c for c in caches)
    # Back to hf: tiny_math is HF's again, not the vLLM result reused.
    back = evaluate_experiment(config, layout, world_benchmarks=world, progress=False)
    assert (back["evaluated"], back["skipped"]) == (2, 2)
    assert read_result(layout, "plain", 0, 4, "tiny_math").provenance.backend == "hf"


def test_vllm_code_generation_asks_for_the_hf_paths_tokens_greedy_and_stops(mini_assets, monkeypatch):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from entrodrop_bench.evaluate.evalplus_runner import STOP_LINES, generate

    _fake_vllm_module(monkeypatch)
    tok = AutoTokenizer.from_pretrained(mini_assets["model"])
    model = AutoModelForCausalLM.from_pretrained(mini_assets["model"]).eval()
    llm = _HFBackedLLM(model, tok)
    prompts = ["def add_two(x):\n    ", "def count_a(s):\n    \"\"\"Count a.\"\"\"\n", "x = 3 + 4\n" * 40]
    got = vllm_backend.generate(llm, tok, prompts, max_new_tokens=16, stop=STOP_LINES, max_positions=64)
    (asked, params), = llm.calls
    assert params == {"temperature": 0.0, "max_tokens": 16, "stop": list(STOP_LINES), "skip_special_tokens": True,
                      "seed": 1234}
    assert asked[0]["prompt_token_ids"] == tok(prompts[0])["input_ids"]
    assert asked[2]["prompt_token_ids"] == tok(prompts[2])["input_ids"][-48:]  # kept its end, room for 16 tokens
    model.config.max_position_embeddings = 64  # the HF path reads its prompt budget from the model
    assert got == generate(model, tok, prompts, batch_size=1, max_new_tokens=16, stop=STOP_LINES)


def test_vllm_backend_generates_code_benchmarks_through_the_engine(mini_config, mini_assets, recording_vllm, monkeypatch,
                                                                   tmp_path):
    from test_eval_evalplus import LEVEL, WEAK_OK, code_problems

    from entrodrop_bench.config import EvalConfig
    from entrodrop_bench.evaluate import sandbox
    from entrodrop_bench.evaluate.stage import evaluate_experiment
    from entrodrop_bench.evaluate.store import read_result

    if LEVEL not in sandbox.LEVELS:
        pytest.skip(f"no usable sandbox here (`{LEVEL}`): apt-get install bubblewrap")
    _fake_vllm_module(monkeypatch)
    code = tmp_path / "tiny_code.jsonl"
    code.write_text("".join(__import__("json").dumps(p) + "\n" for p in code_problems()))
    ev = EvalConfig(evalplus_datasets=["tiny_code"], batch_size=1, limit=2, max_gen_toks=16, allow_weak_isolation=WEAK_OK)
    config = mini_config().model_copy(update={"eval": ev})
    layout = Layout.from_config(config)
    make_checkpoint(mini_assets["model"], layout, step=4)
    world = {"tiny_code": code}
    assert evaluate_experiment(config, layout, world_benchmarks=world, progress=False)["evaluated"] == 1
    hf = read_result(layout, "plain", 0, 4, "tiny_code")
    samples = Path(layout.eval_work_dir("plain", 0, 4) / "evalplus" / "tiny_code" / "eval" / "samples.jsonl")
    hf_samples = samples.read_text()
    assert evaluate_experiment(_with_backend(config, "vllm"), layout, world_benchmarks=world, progress=False)["evaluated"] == 1
    vllm = read_result(layout, "plain", 0, 4, "tiny_code")
    assert len(recording_vllm.made) == 1 and vllm.provenance.backend == "vllm" and hf.provenance.backend == "hf"
    assert vllm.provenance.task_config_hash != hf.provenance.task_config_hash
    assert samples.read_text() == hf_samples and vllm.items == hf.items  # the stand-in decodes as HF does


# --------------------------------------------------------------------------- real vLLM (GPU)
def _tiny_preset_world(tmp_path):
    from entrodrop_bench.prepare.stage import build_world

    config = load_config(PROJECT_ROOT / "configs" / "tiny.yaml",
                         [f"output.runs_dir={tmp_path / 'runs'}", f"output.results_dir={tmp_path / 'results'}"])
    return config, build_world(config, Layout.from_config(config), lambda _: None)


@pytest.mark.slow
def test_vllm_matches_hf_within_sampling_noise_on_a_tiny_preset_checkpoint(tmp_path):
    pytest.importorskip("vllm", reason="needs the vllm extra (pip install -e '.[vllm]')")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device: vLLM generates on GPUs only")
    from entrodrop_bench.evaluate.stage import evaluate_experiment
    from entrodrop_bench.evaluate.store import read_result

    config, world = _tiny_preset_world(tmp_path)
    benches = ["tiny_math"]
    ev = config.eval.model_copy(update={"lm_eval_tasks": benches, "evalplus_datasets": [], "limit": 200,
                                        "request_cache": False, "workers": 1})
    files = {b: world.benchmark_file(b) for b in benches}
    scores = {}
    for backend in ("hf", "vllm"):
        cfg = config.model_copy(update={"eval": ev.model_copy(update={"backend": backend})})
        layout = Layout.from_config(cfg)
        if backend == "hf":
            make_checkpoint(world.base_model_dir, layout, step=4)
        assert evaluate_experiment(cfg, layout, world_benchmarks=files, progress=False)["failed"] == 0
        scores[backend] = read_result(layout, "plain", 0, 4, "tiny_math")
    hf, vl = scores["hf"].items, scores["vllm"].items
    assert hf.ids == vl.ids and scores["vllm"].provenance.backend == "vllm"
    discordant = sum(a != b for a, b in zip(hf.scores, vl.scores))
    # Greedy decoding differs only where kernels' rounding flips a near-tie: nearly every item agrees, and the
    # score difference is within two standard errors of a paired (McNemar) difference.
    assert discordant <= max(2, 0.05 * len(hf.ids)), discordant
    assert abs(sum(hf.scores) - sum(vl.scores)) <= 2 * discordant ** 0.5 + 1
