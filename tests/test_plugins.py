"""Every built-in regularizer plugin on a tiny random Qwen3: training effect, eval neutrality, and each
method's own contract (hidden dropout hooks, NEFTune noise, token masking and its curriculum)."""

from __future__ import annotations

import copy
import inspect
import math

import numpy as np
import pytest
import torch
from helpers import BaseModelSignals

import baselines
from baselines.entrodrop import document_gates
from baselines.masking import GammaSchedule, build_schedule
from entrodrop_bench.errors import ConfigError, UserError
from entrodrop_bench.regularizer import (
    GENERAL,
    REGULARIZERS,
    TARGET,
    PrepareContext,
    TokenMeta,
    build_regularizer,
)

VOCAB, PAD, EOS = 200, 0, 1
SEQ = 64


class _Tok:
    all_special_ids = [PAD, EOS]

    def get_vocab(self) -> dict[str, int]:
        return {f"t{i}": i for i in range(VOCAB)}


def tiny_model(arch: str = "qwen3", seed: int = 0) -> torch.nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(seed)
    common = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, head_dim=8, max_position_embeddings=256, pad_token_id=PAD, tie_word_embeddings=False)
    if arch == "llama":
        return LlamaForCausalLM(LlamaConfig(**common))
    model = Qwen3ForCausalLM(Qwen3Config(**common))
    with torch.no_grad():
        model.lm_head.weight.mul_(20)  # varied entropies
    return model


def target_docs(n: int = 48, length: int = SEQ, seed: int = 0) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    docs = [torch.randint(2, VOCAB, (length,), generator=g).tolist() for _ in range(n)]
    for d in docs:
        d[-1] = EOS  # a special token inside every document: never eligible
    return docs


def ctx_for(model, docs, tmp_path, *, total_steps: int = 100, baseline_min_val_step: int | None = 30) -> PrepareContext:
    return PrepareContext(
        model=model, tokenizer=_Tok(), target_docs=docs, cache_dir=tmp_path / "cache",
        seq_len=SEQ, total_steps=total_steps, device=torch.device("cpu"), seed=0,
        baseline_min_val_step=baseline_min_val_step, signals=BaseModelSignals(model, docs, SEQ),
    )


def meta_from(batch: dict, *, step: int = 50, total_steps: int = 100, seed: int = 0) -> TokenMeta:
    return TokenMeta(domain=batch["domain"], doc_id=batch["doc_id"], position=batch["position"], is_special=batch["is_special"],
                     is_pad=batch["is_pad"], step=step, total_steps=total_steps, generator=torch.Generator().manual_seed(seed))


def whole_doc_batch(docs: list[list[int]]) -> dict:
    """One target document per row (rows = documents)."""
    ids = torch.tensor(docs)
    b, t = ids.shape
    return {"input_ids": ids, "domain": torch.full((b, t), TARGET), "doc_id": torch.arange(b)[:, None].expand(b, t).clone(),
            "position": torch.arange(t)[None, :].expand(b, t).clone(), "is_special": torch.isin(ids, torch.tensor([PAD, EOS])),
            "is_pad": torch.zeros((b, t), dtype=torch.bool)}


def packed_batch(docs: list[list[int]], rows: int = 8) -> dict:
    """Packed rows: a target segment (mid-document, positions 10..39), a general document, then padding."""
    g = torch.Generator().manual_seed(123)
    out = {k: [] for k in ("input_ids", "domain", "doc_id", "position", "is_special", "is_pad")}
    for r in range(rows):
        tgt = torch.tensor(docs[r][10:40])
        gen = torch.randint(2, VOCAB, (20,), generator=g)
        pad = torch.full((SEQ - 50,), PAD)
        ids = torch.cat([tgt, gen, pad])
        out["input_ids"].append(ids)
        out["domain"].append(torch.tensor([TARGET] * 30 + [GENERAL] * 20 + [GENERAL] * (SEQ - 50)))
        out["doc_id"].append(torch.tensor([r] * 30 + [r + 1000] * 20 + [-1] * (SEQ - 50)))
        out["position"].append(torch.cat([torch.arange(10, 40), torch.arange(20), torch.arange(SEQ - 50)]))
        out["is_pad"].append(torch.tensor([False] * 50 + [True] * (SEQ - 50)))
        out["is_special"].append(torch.isin(ids, torch.tensor([PAD, EOS])) | out["is_pad"][-1])
    return {k: torch.stack(v) for k, v in out.items()}


def default_params(name: str) -> dict:
    # Strong settings so that every method visibly acts within one step.
    return {"hidden_dropout": {"p": 0.1}, "weight_decay": {"weight_decay": 0.5}, "neftune": {"alpha": 5.0},
            "token_dropout": {"gamma_max": 0.5, "schedule": "static"}, "entrodrop": {"gamma_max": 0.5}}.get(name, {})


def built(name: str, model, docs, tmp_path, **params):
    reg = build_regularizer(name, {**default_params(name), **params})
    reg.prepare(ctx_for(model, docs, tmp_path))
    reg.adjust_model(model)
    return reg


# --------------------------------------------------------------------------------------------------
# Every registered built-in plugin
# --------------------------------------------------------------------------------------------------
def test_every_builtin_is_registered():
    assert set(baselines.BUILTIN) <= set(REGULARIZERS.names())
    for name in baselines.BUILTIN:
        cls = REGULARIZERS.get(name)
        assert cls.name == name and cls.__module__.startswith("baselines.")
        for field in cls.Config.model_fields.values():
            assert field.description, f"{name}: every config field needs a description"
        with pytest.raises(ConfigError, match="unknown key"):
            build_regularizer(name, {"no_such_key": 1})


@pytest.mark.parametrize("name", baselines.BUILTIN)
def test_one_training_step_and_eval_neutrality(name, tmp_path):
    docs = target_docs()
    model = tiny_model()
    base = copy.deepcopy(model)
    reg = built(name, model, docs, tmp_path)
    batch = packed_batch(docs)
    labels = torch.where(batch["is_pad"], -100, batch["input_ids"])

    # Eval mode: the plugin changes nothing (no transform, hooks are identity).
    model.eval()
    with torch.no_grad():
        embeds = model.get_input_embeddings()(batch["input_ids"])
        assert torch.equal(reg.transform_embeddings(embeds, meta_from(batch)), embeds)
        out = model(inputs_embeds=reg.transform_embeddings(embeds, meta_from(batch))).logits
        ref = base.eval()(input_ids=batch["input_ids"]).logits
    assert torch.equal(out, ref)

    # One training step on a batch with target tokens changes the parameters.
    model.train()
    opt = torch.optim.AdamW(reg.param_groups(model), lr=1e-2)
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    embeds = model.get_input_embeddings()(batch["input_ids"])
    loss = model(inputs_embeds=reg.transform_embeddings(embeds, meta_from(batch)), labels=labels).loss
    loss.backward()
    opt.step()
    assert math.isfinite(loss.item())
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
    assert len(changed) >= len(before) - 2, changed  # everything with a gradient moved
    assert all(isinstance(v, float) for v in reg.log_values().values())


def test_plugin_transform_never_sees_labels():
    """Labels are the trainer's: the hook gets embeddings and TokenMeta only, and TokenMeta carries no labels."""
    from dataclasses import fields

    for name in baselines.BUILTIN:
        params = list(inspect.signature(REGULARIZERS.get(name).transform_embeddings).parameters)
        assert params == ["self", "embeds", "meta"], name
    assert "labels" not in {f.name for f in fields(TokenMeta)}


# --------------------------------------------------------------------------------------------------
# weight_decay, hidden_dropout, neftune
# --------------------------------------------------------------------------------------------------
def test_weight_decay_groups_only_matrices():
    model = tiny_model()
    groups = build_regularizer("weight_decay", {"weight_decay": 0.3}).param_groups(model)
    decay = {id(p) for g in groups if g["weight_decay"] == 0.3 for p in g["params"]}
    none = {id(p) for g in groups if g["weight_decay"] == 0.0 for p in g["params"]}
    for p in model.parameters():
        assert (id(p) in decay) == (p.ndim >= 2) and (id(p) in none) == (p.ndim < 2)
    assert build_regularizer("plain", {}).param_groups(model)[0]["weight_decay"] == 0.0


@pytest.mark.parametrize("arch", ["qwen3", "llama"])
def test_hidden_dropout_identity_in_eval_active_in_train(arch):
    model = tiny_model(arch)
    base = copy.deepcopy(model).eval()
    reg = build_regularizer("hidden_dropout", {"p": 0.1})
    reg.adjust_model(model)
    assert len(reg.handles) == 2 * model.config.num_hidden_layers
    ids = torch.randint(2, VOCAB, (4, 32))
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(ids).logits, base(ids).logits)

    # Train mode: outputs change, about p of each sub-layer's outputs are zeroed, survivors scaled by 1/(1-p).
    seen = []
    probe = model.model.layers[0].mlp.register_forward_hook(lambda m, a, o: seen.append(o.detach()))
    model.train()
    batch = {"domain": torch.full(ids.shape, TARGET), "doc_id": torch.zeros_like(ids), "position": torch.arange(32).expand(4, 32),
             "is_special": torch.zeros(ids.shape, dtype=torch.bool), "is_pad": torch.zeros(ids.shape, dtype=torch.bool)}

    def train_logits(seed):
        seen.clear()
        embeds = model.get_input_embeddings()(ids)
        with torch.no_grad():
            meta = meta_from(batch, seed=seed)
            reg.before_forward(meta)
            return model(inputs_embeds=reg.transform_embeddings(embeds, meta)).logits

    a, b, c = train_logits(1), train_logits(1), train_logits(2)
    assert torch.equal(a, b) and not torch.equal(a, c)  # a pure function of the micro-batch generator
    assert not torch.allclose(a, base(ids).logits)
    zero_share = (seen[0] == 0).float().mean().item()
    n = seen[0].numel()
    assert abs(zero_share - 0.1) < 4 * math.sqrt(0.1 * 0.9 / n)
    probe.remove()
    reg.remove_hooks()
    with torch.no_grad():
        assert torch.equal(model.eval()(ids).logits, base(ids).logits)


def test_hidden_dropout_needs_decoder_layers():
    with pytest.raises(UserError, match="self_attn"):
        build_regularizer("hidden_dropout", {"p": 0.1}).adjust_model(torch.nn.Sequential(torch.nn.Linear(2, 2)))


def test_neftune_noise_matches_formula_and_spares_padding():
    alpha, dim = 5.0, 256
    reg = build_regularizer("neftune", {"alpha": alpha})
    b, t = 6, 400
    real_len = torch.tensor([400, 350, 300, 200, 100, 400])
    is_pad = torch.arange(t)[None, :] >= real_len[:, None]
    batch = {"domain": torch.full((b, t), TARGET), "doc_id": torch.zeros((b, t), dtype=torch.long),
             "position": torch.arange(t).expand(b, t), "is_special": is_pad, "is_pad": is_pad}
    embeds = torch.randn(b, t, dim)
    noise = reg.transform_embeddings(embeds, meta_from(batch)) - embeds
    assert torch.equal(noise[is_pad], torch.zeros_like(noise[is_pad]))
    for r in range(b):
        bound = alpha / math.sqrt(real_len[r].item() * dim)
        x = noise[r][~is_pad[r]].double()
        assert x.abs().max().item() <= bound * (1 + 1e-5)
        assert x.abs().max().item() > 0.99 * bound  # U(-1, 1) fills its range
        # Var of U(-bound, bound) = bound^2 / 3; sample variance within a few standard errors.
        n, var = x.numel(), bound**2 / 3
        assert abs(x.var().item() - var) < 5 * var * math.sqrt(0.8 / n)
        assert abs(x.mean().item()) < 5 * math.sqrt(var / n)
    # Same generator seed, same noise; bf16 in, bf16 out.
    assert torch.equal(reg.transform_embeddings(embeds, meta_from(batch)) - embeds, noise)
    assert reg.transform_embeddings(embeds.bfloat16(), meta_from(batch)).dtype == torch.bfloat16


# --------------------------------------------------------------------------------------------------
# Token dropout and EntroDrop
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def entro_setup(tmp_path_factory):
    """A model, 48 target documents of 64 tokens, and EntroDrop prepared on them (entropy pass cached)."""
    tmp = tmp_path_factory.mktemp("entro")
    model = tiny_model()
    docs = target_docs()
    return model, docs, tmp


def _entrodrop(setup, **params):
    model, docs, tmp = setup
    reg = build_regularizer("entrodrop", {"gamma_max": 0.4, "schedule": "static", **params})
    reg.prepare(ctx_for(model, docs, tmp))
    return reg


def test_gates_follow_per_document_percentiles(entro_setup):
    model, docs, _ = entro_setup
    reg = _entrodrop(entro_setup, percentile=0.3)
    values = reg_values(entro_setup)
    gates = reg.gates.numpy()
    offsets = reg.offsets.numpy()
    for d, doc in enumerate(docs):
        sig = values[offsets[d] : offsets[d + 1]]
        eligible = np.isfinite(sig) & ~np.isin(doc, [PAD, EOS])
        eligible[0] = False
        threshold = np.quantile(sig[eligible], 0.3)
        assert np.array_equal(gates[offsets[d] : offsets[d + 1]], eligible & (sig <= threshold))
    assert 0.25 < reg.static_gated_fraction < 0.35


def reg_values(setup) -> np.ndarray:
    from entrodrop_bench.prepare.entropy import cached_token_signals, signals_cache_key

    model, docs, tmp = setup
    key = signals_cache_key(model, _Tok(), docs, seq_len=SEQ, kind="entropy")
    values, _ = cached_token_signals(model, docs, cache_file=tmp / "cache" / f"{key}.safetensors", kind="entropy", seq_len=SEQ)
    return values


def test_high_and_low_targets_are_disjoint(entro_setup):
    low, high = _entrodrop(entro_setup, target="low"), _entrodrop(entro_setup, target="high")
    every = _entrodrop(entro_setup, target="all")
    assert every.gates is None  # vanilla needs no entropy
    batch = whole_doc_batch(entro_setup[1])
    meta = meta_from(batch)
    g_low, g_high = low.gate(meta), high.gate(meta)
    assert not (g_low & g_high).any()
    assert torch.equal(g_low | g_high, meta.eligible)  # k = 0.5: "<= median" and "> median" split the eligible tokens
    values = reg_values(entro_setup)
    flat = torch.from_numpy(values).reshape(g_low.shape)
    assert flat[g_low].mean() < flat[g_high].mean()


def test_entrodrop_masks_only_gated_eligible_target_tokens(entro_setup):
    model, docs, _ = entro_setup
    reg = _entrodrop(entro_setup)
    batch = packed_batch(docs)
    meta = meta_from(batch)
    embeds = model.get_input_embeddings()(batch["input_ids"]).detach()
    original = embeds.clone()
    out = reg.transform_embeddings(embeds, meta)
    assert torch.equal(embeds, original)  # input untouched
    mask = reg.last_mask
    gate = reg.gate(meta)
    assert mask.any() and not (mask & ~(gate & meta.eligible)).any()
    changed = (out != embeds).any(-1)
    assert torch.equal(changed, mask)
    assert not changed[batch["domain"] == GENERAL].any()  # general segment and padding of packed rows untouched
    mean = model.get_input_embeddings().weight.detach().mean(0)
    assert torch.allclose(out[mask], mean.expand(int(mask.sum()), -1), atol=0, rtol=0)
    # Gate lookups index by (doc_id, position inside the document), also mid-document.
    offsets = reg.offsets
    r, c = torch.nonzero(batch["domain"] == TARGET, as_tuple=True)
    expected = reg.gates[offsets[batch["doc_id"][r, c]] + batch["position"][r, c]] & meta.eligible[r, c]
    assert torch.equal(gate[r, c], expected)


def test_zero_mask_embedding_and_bf16(entro_setup):
    model, docs, _ = entro_setup
    reg = _entrodrop(entro_setup, mask_embedding="zero")
    batch = whole_doc_batch(docs)
    embeds = model.get_input_embeddings()(batch["input_ids"]).detach().bfloat16()
    out = reg.transform_embeddings(embeds, meta_from(batch))
    assert out.dtype == torch.bfloat16 and reg.last_mask.any()
    assert (out[reg.last_mask] == 0).all()


@pytest.mark.parametrize("name", ["entrodrop", "token_dropout"])
def test_masked_fraction_matches_gamma_times_gated(entro_setup, name):
    model, docs, tmp = entro_setup
    reg = build_regularizer(name, {"gamma_max": 0.4, "schedule": "static"})
    reg.prepare(ctx_for(model, docs, tmp))
    batch = whole_doc_batch(docs)
    embeds = model.get_input_embeddings()(batch["input_ids"]).detach()
    for step in range(12):
        meta = meta_from(batch, step=step, seed=step)
        reg.transform_embeddings(embeds, meta)
        logs = reg.log_values()  # this step's values
        gamma = logs["gamma"]
        assert 0 <= gamma <= 0.4 and logs["gamma_max"] == 0.4
        candidates = meta.eligible if name == "token_dropout" else meta.eligible & reg.gate(meta)
        n, k = int(candidates.sum()), int(reg.last_mask.sum())
        sigma = math.sqrt(n * gamma * (1 - gamma))
        assert abs(k - gamma * n) <= 4 * sigma + 1, (step, k, gamma, n)
        assert logs["masked_fraction"] == pytest.approx(k / int(meta.eligible.sum()))
        assert logs["gated_fraction"] == pytest.approx(1.0 if name == "token_dropout" else 0.5, abs=0.02)
    assert reg.log_values()["masked_fraction"] == 0.0, "counters restart after each step's log"


def test_masks_are_a_pure_function_of_the_generator(entro_setup):
    model, docs, _ = entro_setup
    batch = whole_doc_batch(docs)
    embeds = model.get_input_embeddings()(batch["input_ids"]).detach()
    masks = []
    for seed in (7, 7, 8):
        reg = _entrodrop(entro_setup, gamma_sampling="per_sample")
        reg.transform_embeddings(embeds, meta_from(batch, seed=seed))
        masks.append(reg.last_mask)
    assert torch.equal(masks[0], masks[1]) and not torch.equal(masks[0], masks[2])


def test_per_step_gamma_is_shared_by_micro_batches(entro_setup):
    reg = _entrodrop(entro_setup)
    docs = entro_setup[1]
    batch = whole_doc_batch(docs)
    embeds = torch.zeros(len(docs), SEQ, 32)
    gammas = []
    for micro in range(3):
        reg.transform_embeddings(embeds, meta_from(batch, step=5, seed=micro))
        gammas.append(reg.log_values()["gamma"])
    reg.transform_embeddings(embeds, meta_from(batch, step=6, seed=0))
    assert gammas[0] == gammas[1] == gammas[2] != reg.log_values()["gamma"]


def test_doc_ids_outside_the_corpus_are_an_error(entro_setup):
    reg = _entrodrop(entro_setup)
    batch = whole_doc_batch(entro_setup[1])
    batch["doc_id"] = batch["doc_id"] + 1000
    with pytest.raises(RuntimeError, match="outside the target documents"):
        reg.transform_embeddings(torch.zeros(len(entro_setup[1]), SEQ, 32), meta_from(batch))


def test_nll_signal_and_long_documents(tmp_path):
    """Documents longer than seq_len arrive as several rows with the position continuing."""
    model = tiny_model()
    docs = target_docs(n=4, length=150)
    reg = build_regularizer("entrodrop", {"gamma_max": 0.4, "schedule": "static", "signal": "nll"})
    reg.prepare(ctx_for(model, docs, tmp_path))
    assert len(reg.gates) == 600
    rows = []
    for d in range(4):
        for start in (0, 64, 128):
            pos = torch.arange(start, start + 64)
            rows.append((d, pos))
    batch = {"doc_id": torch.stack([torch.full((64,), d) for d, _ in rows]), "position": torch.stack([p for _, p in rows])}
    valid = batch["position"] < 150
    batch["position"] = torch.where(valid, batch["position"], 0)
    batch["doc_id"] = torch.where(valid, batch["doc_id"], -1)
    batch["domain"] = torch.where(valid, TARGET, GENERAL)
    batch["is_pad"] = ~valid
    ids = torch.tensor([docs[d][p] if v else PAD for (d, pos), vrow in zip(rows, valid) for p, v in zip(pos.tolist(), vrow.tolist())])
    batch["is_special"] = torch.isin(ids.reshape(len(rows), 64), torch.tensor([PAD, EOS]))
    meta = meta_from(batch)
    gate = reg.gate(meta)
    index = reg.offsets[batch["doc_id"].clamp(min=0)] + batch["position"]
    assert torch.equal(gate, reg.gates[index] & valid)
    assert gate[batch["position"] >= 64].any()  # positions past seq_len (later rows of a document) are gated too


# --------------------------------------------------------------------------------------------------
# The curriculum
# --------------------------------------------------------------------------------------------------
def test_schedule_formulas():
    s = GammaSchedule(0.1, "sigmoid", 300.0, 10 / 1000)
    assert s(300) == pytest.approx(0.05)
    assert s(300 + math.log(3) / 0.01) == pytest.approx(0.075)
    assert s(0) == pytest.approx(0.1 / (1 + math.exp(3)))
    assert s(10**9) == pytest.approx(0.1) and s(-(10**9)) == 0.0  # no overflow at the extremes
    static = GammaSchedule(0.2, "static", 0.0, 0.01)
    assert static(0) == static(999) == 0.2
    lin = GammaSchedule(0.4, "linear", 100.0, 0.01)
    assert [lin(j) for j in (0, 50, 100, 200, 500)] == pytest.approx([0.0, 0.1, 0.2, 0.4, 0.4])


def _cfg(**params):
    return build_regularizer("entrodrop", params).config


def test_j0_forms():
    assert build_schedule(_cfg(j0=250), 1000, None, plugin="entrodrop").j0 == 250
    assert build_schedule(_cfg(j0=0.3), 1000, None, plugin="entrodrop").j0 == pytest.approx(300)
    auto = build_schedule(_cfg(j0="auto"), 1000, 420, plugin="entrodrop")
    assert auto.j0 == 420 and auto.slope == pytest.approx(0.01)
    assert build_schedule(_cfg(j0="auto", sharpness=20), 500, 1, plugin="entrodrop").slope == pytest.approx(0.04)
    with pytest.raises(ConfigError, match="needs the baseline run"):
        build_schedule(_cfg(j0="auto"), 1000, None, plugin="entrodrop")
    assert build_schedule(_cfg(schedule="static"), 1000, None, plugin="entrodrop")(0) == 0.1  # static ignores j0
    for bad in (1.5, 0.0, -3, "soon"):
        with pytest.raises(ConfigError, match="j0"):
            _cfg(j0=bad)


def test_prepare_raises_for_auto_j0_without_a_baseline_run(tmp_path):
    reg = build_regularizer("token_dropout", {"j0": "auto"})
    with pytest.raises(ConfigError, match="j0=auto needs the baseline run"):
        reg.prepare(ctx_for(tiny_model(), target_docs(n=2), tmp_path, baseline_min_val_step=None))


def test_document_gates_vectorized_matches_loop():
    rng = np.random.default_rng(0)
    lengths = rng.integers(0, 30, size=40)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    values = rng.exponential(size=offsets[-1]).astype(np.float32)
    values[rng.random(len(values)) < 0.1] = 0.0  # ties
    eligible = rng.random(len(values)) > 0.2
    for target, k in (("low", 0.5), ("low", 0.25), ("high", 0.5), ("high", 0.1)):
        gates = document_gates(values, offsets, eligible, k, target)
        for d in range(40):
            sl = slice(offsets[d], offsets[d + 1])
            v, e = values[sl].astype(np.float64), eligible[sl]
            if not e.any():
                assert not gates[sl].any()
                continue
            expect = e & (v <= np.quantile(v[e], k)) if target == "low" else e & (v > np.quantile(v[e], 1 - k))
            assert np.array_equal(gates[sl], expect), (target, k, d)


def test_readme_plugin_example_registers_and_acts_only_on_eligible_target_tokens():
    """The plugin shown in README.md, executed as written: it registers, validates its config, and its
    noise touches only eligible target-domain tokens of a packed batch."""
    import re

    from entrodrop_bench.paths import PROJECT_ROOT

    readme = (PROJECT_ROOT / "README.md").read_text()
    section = readme[readme.index("## Adding a regularization method"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    exec(compile(code, "README.md", "exec", dont_inherit=True), {"__name__": "readme_example"})  # not this file's __future__
    name = re.search(r'@register_regularizer\("([^"]+)"\)', code).group(1)
    with pytest.raises(ConfigError):
        build_regularizer(name, {"sigma": -1})
    reg = build_regularizer(name, {"sigma": 0.5})
    batch = packed_batch(target_docs())
    embeds = torch.zeros(*batch["input_ids"].shape, 8)
    meta = meta_from(batch)
    changed = (reg.transform_embeddings(embeds, meta) != embeds).any(-1)
    assert changed.any() and torch.equal(changed, meta.eligible & changed)
    assert not changed[batch["domain"] == GENERAL].any()
    cls = type(reg)  # the declarations shown in the README
    assert cls.baseline_dependency(cls.Config(start="baseline")) == "start" and cls.baseline_dependency(cls.Config()) is None
    assert cls.table_role(cls.Config()).label == "+Target Noise"
