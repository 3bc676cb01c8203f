"""One HF model loader (`models.load_causal_lm`) behind the base model and the evaluated checkpoints,
each caller keeping its own options."""

from __future__ import annotations

import torch

from entrodrop_bench.models import load_causal_lm, load_model


def _record_loads(monkeypatch) -> list[tuple[str, dict]]:
    import transformers

    calls: list[tuple[str, dict]] = []
    real = transformers.AutoModelForCausalLM.from_pretrained

    def recording(path, **options):
        calls.append((str(path), options))
        return real(path, **options)

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", recording)
    return calls


def test_the_base_model_loads_from_safetensors_with_the_configs_options(mini_config, monkeypatch):
    calls = _record_loads(monkeypatch)
    config = mini_config(model={"dtype": "bfloat16"})
    model = load_model(config, config.model.name_or_path)
    assert calls == [(config.model.name_or_path, {"dtype": torch.bfloat16, "trust_remote_code": False,
                                                  "use_safetensors": True, "attn_implementation": "sdpa"})]
    assert next(model.parameters()).dtype == torch.bfloat16


def test_a_checkpoint_loads_with_dtype_only_and_lands_on_the_device_in_eval_mode(mini_config, monkeypatch, tmp_path):
    """The evaluator's load: transformers' defaults for everything but the dtype (as before the one loader)."""
    from test_eval_lm_eval import make_checkpoint

    from entrodrop_bench.evaluate.stage import _Loaded
    from entrodrop_bench.paths import Layout

    config = mini_config()
    ckpt = make_checkpoint(config.model.name_or_path, Layout.from_config(config))
    calls = _record_loads(monkeypatch)
    model, _ = _Loaded(ckpt, config).model_and_tokenizer()
    assert calls == [(str(ckpt), {"dtype": getattr(torch, config.model.dtype)})]
    assert not model.training and next(model.parameters()).device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert load_causal_lm(ckpt, dtype="float32").training is False  # no device: left where transformers put it
