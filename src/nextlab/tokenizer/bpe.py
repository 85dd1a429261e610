"""Byte-level BPE with the `tokenizers` library.

Byte-level means every string, in any script, encodes and decodes back exactly: the base
alphabet is the 256 bytes, and merges are learned on the training split only.

>>> tok = train_bpe(["the cat sat on the mat"] * 50, vocab_size=300)
>>> ids = tok.encode("the cat ü 猫").ids
>>> tok.decode(ids, skip_special_tokens=False)
'the cat ü 猫'
>>> tok.token_to_id("<|bos|>"), tok.token_to_id("<|eos|>"), tok.token_to_id("<|pad|>")
(0, 1, 2)
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from nextlab.config import SPECIAL_TOKENS
from nextlab.errors import InputFileError

BOS_ID, EOS_ID, PAD_ID, QUESTION_ID, ANSWER_ID, CONFIDENCE_ID = range(len(SPECIAL_TOKENS))


def new_tokenizer() -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    return tok


def train_bpe(texts: Iterable[str], vocab_size: int, min_frequency: int = 2) -> Tokenizer:
    """Learn merges from `texts`; special tokens take ids 0..5 in SPECIAL_TOKENS order."""
    tok = new_tokenizer()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    for expected_id, token in enumerate(SPECIAL_TOKENS):
        assert tok.token_to_id(token) == expected_id, f"special token {token} got id {tok.token_to_id(token)}"
    return tok


def load_tokenizer(path: str | Path) -> Tokenizer:
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"{path}: tokenizer not found (run `nextlab tokenize` first)")
    try:
        tok = Tokenizer.from_file(str(path))
    except Exception as err:
        raise InputFileError(f"{path}: not a valid tokenizer file ({err})") from None
    for expected_id, token in enumerate(SPECIAL_TOKENS):
        if tok.token_to_id(token) != expected_id:
            raise InputFileError(f"{path}: special token {token} is not id {expected_id}; not a nextlab tokenizer")
    return tok


def encode_documents(tok: Tokenizer, texts: list[str]) -> list[list[int]]:
    """Each document as `<|bos|> text <|eos|>` ids."""
    encodings = tok.encode_batch(texts, add_special_tokens=False)
    return [[BOS_ID, *enc.ids, EOS_ID] for enc in encodings]
