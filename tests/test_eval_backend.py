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
from entrodrop_bench.evaluate.suites import generates, generation_backend, task_config_hash
from entrodrop_bench.paths import PROJECT_ROOT, Layout, WorldPaths

VLLM_INSTALLED = importlib.util.find_spec("vllm") is not None


def _perturbed_model(model_dir: Path, dest: Path, scale: float = 0.5) -> Path:
    """A copy of `model_dir` whose weights differ (seeded noise) and nothing else: a later checkpoint."""
    import shutil

    from safetensors.torch import load_file, save_file

    shutil.copytree(model_dir, dest)
    torch.manual_seed(1)
    weights = {k: v + scale * torch.randn_like(v) for k, v in load_file(dest / "model.safetensors").items()}
    save_file(weights, dest / "model.safetensors", metadata={"format": "pt"})
    return dest


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
    from entrodrop_bench.evaluate.stage import evaluate_experiment
    from entrodrop_bench.orchestrate import pipeline

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
    from entrodrop_bench.orchestrate import pipeline

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

    def collective_rpc(self, method, kwargs=None):
        """vLLM's in-place weight load, as `WorkerEngine` asks for it: the checkpoint folder's weights."""
        from transformers import AutoModelForCausalLM

        assert method == "load_checkpoint_weights" and set(kwargs) == {"path"}
        _RecordingVLLM.events.append(f"vllm reload {Path(kwargs['path']).name}")
        self.model = AutoModelForCausalLM.from_pretrained(kwargs["path"]).eval()
        return [None]

    def reset_prefix_cache(self):
        return True

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


@pytest.mark.parametrize("reuse", [True, False], ids=["one-engine-per-worker", "one-engine-per-checkpoint"])
def test_vllm_backend_routes_generation_to_the_workers_engine_and_records_it(eval_setup, mini_assets,  # noqa: F811
                                                                              recording_vllm, monkeypatch, reuse):
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
    vllm = _with_backend(config, "vllm", vllm_max_model_len=256, vllm_reuse_engine=reuse)
    make_checkpoint(_perturbed_model(mini_assets["model"], layout.runs_dir / "later"), layout, step=8)
    summary = evaluate_experiment(vllm, layout, world_benchmarks=world, progress=False)
    # Checkpoint 4: tiny_math's identity changed with the backend (re-evaluated); tiny_general is scored by HF
    # under either backend, so its result stands. Checkpoint 8: both.
    assert (summary["evaluated"], summary["skipped"], summary["failed"]) == (3, 1, 0), summary
    args = {"dtype": "float32", "batch_size": "auto", "max_gen_toks": 12, "seed": 1234,
            "worker_extension_cls": "entrodrop_bench.evaluate.vllm_worker.CheckpointWeights",
            "gpu_memory_utilization": 0.85, "max_model_len": 256}
    ckpt8 = layout.checkpoint_dir("plain", 0, 8)
    if reuse:
        # One engine for the worker, started on its first checkpoint; checkpoint 8's weights loaded into it. On
        # CPU the engine stays up while the HF model scores tiny_general; it goes down when the worker ends.
        assert recording_vllm.made == [{"pretrained": str(ckpt), **args}]
        assert recording_vllm.events == ["vllm up", "vllm reload checkpoint-8", "hf up", "vllm down"]
        assert (summary["vllm_engine_starts"], summary["vllm_weight_loads"]) == (1, 1)
    else:
        # One engine per checkpoint, generation first, released before the HF model loads and before the next.
        assert recording_vllm.made == [{"pretrained": str(ckpt), **args}, {"pretrained": str(ckpt8), **args}]
        assert recording_vllm.events == ["vllm up", "vllm down", "vllm up", "vllm down", "hf up"]
        assert (summary["vllm_engine_starts"], summary["vllm_weight_loads"]) == (2, 0)
    v_math = read_result(layout, "plain", 0, 4, "tiny_math")
    assert v_math.provenance.backend == "vllm" and "vllm" in v_math.provenance.versions
    assert v_math.provenance.task_config_hash != hf_math.provenance.task_config_hash
    assert v_math.items.ids == hf_math.items.ids and v_math.items.scores == hf_math.items.scores  # HF's answers
    v8 = read_result(layout, "plain", 0, 8, "tiny_math")  # the store names the checkpoint whose weights answered
    assert v8.provenance.checkpoint == str(ckpt8) and v8.provenance.backend == "vllm"
    assert read_result(layout, "plain", 0, 8, "tiny_general").provenance.backend == "hf"
    # Each engine has its own request cache (lm-eval's keys ignore the model).
    caches = sorted(p.name for p in (layout.eval_work_dir("plain", 0, 4) / "lm_cache").glob("*.db"))
    assert len(caches) == 2 and any("-vllm" in c for c in caches)
    # Back to hf: tiny_math is HF's again, not the vLLM result reused.
    back = evaluate_experiment(config, layout, world_benchmarks=world, progress=False)
    assert (back["evaluated"], back["skipped"]) == (2, 2)
    assert read_result(layout, "plain", 0, 4, "tiny_math").provenance.backend == "hf"


def test_a_launch_eval_job_keeps_one_engine_across_its_polls(eval_setup, mini_assets, recording_vllm,  # noqa: F811
                                                            monkeypatch):
    """`launch`'s eval job evaluates checkpoints as training writes them (one `eval` per new set): one engine
    serves them all; it goes down when the job ends."""
    from entrodrop_bench.orchestrate import launch

    make, world, _ = eval_setup
    config, layout = make(["tiny_math"], data_overrides={"tiny_math": str(world["tiny_math"])})
    config = _with_backend(config, "vllm")
    make_checkpoint(mini_assets["model"], layout, step=4)
    later = _perturbed_model(mini_assets["model"], layout.runs_dir / "later")
    looks = iter(range(3))

    def training_over(cfg, lay):
        look = next(looks)
        if look == 1:  # training wrote checkpoint 8 after the job's first evaluation
            make_checkpoint(later, layout, step=8)
        return look == 2, []

    monkeypatch.setattr(launch, "_training_over", training_over)
    assert launch.eval_worker(config, layout, echo=lambda _: None) == "evaluated 2 checkpoint(s)"
    assert len(recording_vllm.made) == 1
    assert recording_vllm.events == ["vllm up", "vllm reload checkpoint-8", "vllm down"]


def test_worker_engine_reloads_only_new_weights_and_restarts_for_another_model(mini_assets, recording_vllm,
                                                                                 tmp_path, monkeypatch):
    """Same engine key, other weights: a reload; same weights again: nothing; another tokenizer or config (the
    engine was built from them): a fresh engine."""
    import shutil

    _fake_vllm_module(monkeypatch)
    from entrodrop_bench.config import EvalConfig

    config = load_config(PROJECT_ROOT / "configs" / "tiny.yaml",
                         [f"output.runs_dir={tmp_path / 'runs'}", f"output.results_dir={tmp_path / 'results'}"])
    config = config.model_copy(update={"eval": EvalConfig(backend="vllm")})
    a, b, other = tmp_path / "a", tmp_path / "b", tmp_path / "other"
    shutil.copytree(mini_assets["model"], a)
    shutil.copytree(mini_assets["model"], other)
    _perturbed_model(mini_assets["model"], b)
    cfg = __import__("json").loads((other / "config.json").read_text())
    (other / "config.json").write_text(__import__("json").dumps({**cfg, "max_position_embeddings": 256}))
    assert vllm_backend.engine_key(a) == vllm_backend.engine_key(b) != vllm_backend.engine_key(other)
    engine = vllm_backend.WorkerEngine(config)
    first = engine.lm(a, "sha-a")
    assert engine.lm(a, "sha-a") is first and engine.lm(b, "sha-b") is first and engine.lm(b, "sha-b") is first
    assert engine.lm(a, "sha-a2") is first  # the same folder rewritten: its new content is loaded
    assert (engine.starts, engine.reloads) == (1, 2)
    assert recording_vllm.events == ["vllm up", "vllm reload b", "vllm reload a"]
    assert engine.lm(other, "sha-o") is not first and (engine.starts, engine.reloads) == (2, 2)
    assert [m["pretrained"] for m in recording_vllm.made] == [str(a), str(other)]
    engine.close()
    assert recording_vllm.events == ["vllm up", "vllm reload b", "vllm reload a", "vllm down", "vllm up", "vllm down"]


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


# --------------------------------------------------------------------------- real vLLM (CPU build or GPU)
VLLM_PROBLEM = vllm_backend.backend_problem()
needs_vllm = pytest.mark.skipif(VLLM_PROBLEM is not None, reason=f"real vLLM cannot run here: {VLLM_PROBLEM} "
                                                                   "(`make test-vllm` sets up vLLM's CPU build and runs these)")
# The tiny preset's model (its shape, tokenizer and training) in a shrunk world: 3 checkpoints of the plain run.
TINY_RUN = ["tiny.n_target_docs=60", "tiny.n_general_docs=300", "tiny.n_benchmark=40", "tiny.pretrain_tokens=60000",
            "data.token_budget=24576", "train.checkpoint_every_epochs=2", "methods={plain: {plugin: plain}}"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """(config, layout, tiny_math file, checkpoint folders): the tiny preset's plain run, trained by the CLI."""
    import subprocess

    tmp = tmp_path_factory.mktemp("vllm-tiny")
    overrides = [*TINY_RUN, f"output.runs_dir={tmp / 'runs'}", f"output.results_dir={tmp / 'results'}"]
    proc = subprocess.run([sys.executable, "-m", "entrodrop_bench.cli", "train", str(PROJECT_ROOT / "configs" / "tiny.yaml"),
                           *overrides, "--no-progress"], capture_output=True, text=True, timeout=1200, cwd=PROJECT_ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    config = load_config(PROJECT_ROOT / "configs" / "tiny.yaml", overrides)
    layout = Layout.from_config(config)
    ckpts = [folder for _, folder in layout.checkpoints("plain", 0)]
    assert len(ckpts) >= 3, ckpts
    return config, layout, WorldPaths(layout.world_dir).benchmark_file("tiny_math"), ckpts


def _tiny_math_prompts(path: Path, n: int) -> list[str]:
    import json

    return [json.loads(line)["question"] + "\n" for line in path.read_text().splitlines()[:n]]


@pytest.mark.vllm
@needs_vllm
def test_lm_eval_finds_vllm_and_a_cpu_build_reserves_a_kv_cache_not_a_share_of_ram(mini_config):
    from importlib.metadata import version

    from lm_eval.models.vllm_causallms import VLLM

    assert vllm_backend.lm_eval_vllm_class() is VLLM  # lm-eval's module asks importlib.metadata for "vllm"
    config = mini_config(eval={"backend": "vllm", "vllm_cpu_kvcache_gib": 0.5})
    args = vllm_backend.lm_eval_vllm_args(config, Path("ckpt"))
    if vllm_backend.cpu_build():
        assert version("vllm").endswith("+cpu")  # the metadata record: vLLM's platform detection reads "+cpu"
        assert args["kv_cache_memory_bytes"] == 2**29 and "gpu_memory_utilization" not in args
    else:
        assert args["gpu_memory_utilization"] == 0.85 and "kv_cache_memory_bytes" not in args


@pytest.mark.vllm
@pytest.mark.slow
@needs_vllm
def test_one_engine_loads_each_checkpoint_and_generates_what_a_fresh_engine_and_hf_do(tiny_run):
    """Weights loaded into a running engine give, token for token, a fresh engine's and HF's greedy text."""
    from transformers import AutoTokenizer

    from entrodrop_bench.evaluate.evalplus_runner import STOP_LINES
    from entrodrop_bench.evaluate.evalplus_runner import generate as hf_generate
    from entrodrop_bench.models import load_causal_lm

    config, _, math_file, ckpts = tiny_run
    config = _with_backend(config, "vllm", vllm_cpu_kvcache_gib=1)
    first, last = ckpts[0], ckpts[-1]
    prompts = _tiny_math_prompts(math_file, 24)
    tok = AutoTokenizer.from_pretrained(last)

    def hf(ckpt: Path) -> list[str]:
        return hf_generate(load_causal_lm(ckpt, dtype="float32", device="cpu"), tok, prompts, batch_size=8,
                           max_new_tokens=32, stop=STOP_LINES)

    def gen(lm) -> list[str]:
        return vllm_backend.generate(lm.model, tok, prompts, max_new_tokens=32, stop=STOP_LINES,
                                     max_positions=vllm_backend.engine_max_positions(lm, 1 << 30))

    engine = vllm_backend.WorkerEngine(config)
    try:
        on_first = gen(engine.lm(first, "first"))
        reused = gen(engine.lm(last, "last"))
        assert (engine.starts, engine.reloads) == (1, 1)
    finally:
        engine.close()
    fresh_engine = vllm_backend.WorkerEngine(config)
    try:
        fresh = gen(fresh_engine.lm(last, "last"))
    finally:
        fresh_engine.close()
    assert on_first != reused, "the checkpoints generate alike: this test could not see stale weights"
    assert reused == fresh, "weights loaded into a running engine generate otherwise than a fresh engine"
    assert on_first == hf(first) and reused == hf(last)  # and what HF's greedy decoding writes


@pytest.mark.vllm
@pytest.mark.slow
@needs_vllm
def test_a_worker_evaluates_every_tiny_checkpoint_with_one_engine_as_hf_does_item_for_item(tiny_run):
    from entrodrop_bench.evaluate.stage import evaluate_experiment
    from entrodrop_bench.evaluate.store import read_result

    config, layout, math_file, ckpts = tiny_run
    ev = config.eval.model_copy(update={"lm_eval_tasks": ["tiny_math"], "evalplus_datasets": [], "limit": 40,
                                        "request_cache": False, "workers": 1, "threads": 2, "vllm_cpu_kvcache_gib": 1})
    files = {"tiny_math": math_file}
    steps = [step for step, _ in layout.checkpoints("plain", 0)]
    results = {}
    for backend in ("hf", "vllm"):
        cfg = config.model_copy(update={"eval": ev.model_copy(update={"backend": backend})})
        summary = evaluate_experiment(cfg, layout, world_benchmarks=files, progress=False)
        assert (summary["evaluated"], summary["failed"]) == (len(ckpts), 0), summary
        results[backend] = {s: read_result(layout, "plain", 0, s, "tiny_math") for s in steps}
    assert (summary["vllm_engine_starts"], summary["vllm_weight_loads"]) == (1, len(ckpts) - 1)
    assert len({tuple(r.items.scores) for r in results["hf"].values()}) > 1  # the checkpoints answer differently
    for step, folder in zip(steps, ckpts):
        hf, vl = results["hf"][step], results["vllm"][step]
        assert vl.provenance.backend == "vllm" and vl.provenance.checkpoint == str(folder)
        assert vl.provenance.checkpoint_sha256 == hf.provenance.checkpoint_sha256
        assert vl.items.ids == hf.items.ids
        if vllm_backend.cpu_build():  # fp32 on CPU: greedy text identical (checked token for token above)
            assert vl.items.scores == hf.items.scores, step
        else:  # other GPU kernels may flip a near-tie: nearly every item agrees
            assert sum(a != b for a, b in zip(hf.items.scores, vl.items.scores)) <= max(2, 0.05 * len(hf.items.ids))
