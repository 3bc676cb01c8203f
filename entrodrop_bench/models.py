"""The one loader of models and tokenizers, used by every stage that needs one: `prepare` (the base model and
its tokenizer, which training then loads through the prepared record) and `evaluate` (the trained checkpoints).

torch and transformers are imported inside the functions, so importing this module costs nothing.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from entrodrop_bench.config import ExperimentConfig
from entrodrop_bench.errors import UserError

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)


def resolve_model_path(config: ExperimentConfig, world: Any) -> str:
    """The base model's local folder (the tiny world's) or hub id."""
    if config.model.name_or_path == "tiny":
        return str(world.base_model_dir)
    return config.model.name_or_path


def load_tokenizer(config: ExperimentConfig, model_path: str) -> Any:
    """The experiment's tokenizer, with the pad token the config names; refused without one."""
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(model_path, revision=config.model.revision, trust_remote_code=config.model.trust_remote_code)
    except Exception as exc:
        raise UserError(
            f"model.name_or_path: could not load a tokenizer from {model_path!r}: {type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:200]}. Without hub access, point model.name_or_path at a local HF folder."
        ) from None
    if config.model.pad_token is not None:
        tok.pad_token = config.model.pad_token
    if tok.pad_token_id is None:
        raise UserError(
            f"tokenizer of {model_path!r} has no pad token; set model.pad_token in the config to an existing "
            f"token (e.g. a reserved or end-of-text token). Without one, lm-eval silently pads with eos."
        )
    return tok


def load_causal_lm(path: str | Path, *, dtype: str, revision: str | None = None, trust_remote_code: bool | None = None,
                   safetensors_only: bool = False, attn_implementation: str | None = None,
                   device: str | torch.device | None = None) -> torch.nn.Module:
    """The one loader of an HF causal LM (base model and checkpoints). `dtype` is a torch dtype name; options left
    None are not passed, so transformers' own defaults apply. On `device` in eval mode when one is given."""
    import torch
    from transformers import AutoModelForCausalLM

    options: dict = {"dtype": getattr(torch, dtype)}
    if revision is not None:
        options["revision"] = revision
    if trust_remote_code is not None:
        options["trust_remote_code"] = trust_remote_code
    if safetensors_only:
        options["use_safetensors"] = True
    if attn_implementation is not None:
        options["attn_implementation"] = attn_implementation
    model = AutoModelForCausalLM.from_pretrained(path, **options)
    if device is not None:
        model.to(device).eval()
    return model


def load_model(config: ExperimentConfig, model_path: str) -> torch.nn.Module:
    """The base model in `model.dtype`, from safetensors only; remote code only when the config allows it."""
    if config.model.trust_remote_code:
        log.warning("model.trust_remote_code is on: code from %s will run", model_path)
    try:
        return load_causal_lm(model_path, dtype=config.model.dtype, revision=config.model.revision,
                              trust_remote_code=config.model.trust_remote_code, safetensors_only=True,
                              attn_implementation="sdpa")
    except Exception as exc:
        raise UserError(
            f"model: could not load {model_path!r} as a causal LM from safetensors: {type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:300]}"
        ) from None
