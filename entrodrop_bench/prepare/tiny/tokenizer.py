"""A byte-level BPE trained on the world's own text, digits split one by one (so arithmetic is learnable)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

PAD_TOKEN = "<|pad|>"
EOS_TOKEN = "<|endoftext|>"


def train_tokenizer(texts: Iterable[str], vocab_size: int):
    """A PreTrainedTokenizerFast with pad and eos, left padding (for batched generation)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    raw = Tokenizer(models.BPE(unk_token=None))
    raw.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    raw.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[PAD_TOKEN, EOS_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    raw.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=raw, pad_token=PAD_TOKEN, eos_token=EOS_TOKEN, padding_side="left", model_max_length=1024
    )


def save_tokenizer(tokenizer, folder: Path) -> None:
    tokenizer.save_pretrained(str(folder))


def load_tokenizer(folder: Path):
    """A tokenizer `save_tokenizer` wrote (pad, eos and left padding come back from its files)."""
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast.from_pretrained(str(folder))
