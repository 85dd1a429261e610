"""The tokenize stage: a byte-level BPE trained on the training split, and token files."""

from nextlab.tokenizer.bpe import BOS_ID, EOS_ID, PAD_ID, load_tokenizer, train_bpe

__all__ = ["BOS_ID", "EOS_ID", "PAD_ID", "load_tokenizer", "train_bpe"]
