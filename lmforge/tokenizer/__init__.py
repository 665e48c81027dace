"""The tokenizer layer: the byte-level BPE (bpe.py), and tokenizing a corpus into the token shards
that pretraining reads (shards.py: one process; parts.py: in parallel, read back as one array);
stage.py is the tokenizer stage.

    from lmforge.tokenizer import Tokenizer, write_token_shards, load_split
"""
from .bpe import ALL_SPECIAL_TOKENS, ROLES, SPECIAL_TOKENS, Tokenizer, TokenizerError
from .parts import CorruptShardError, TokenShards, load_split, open_parts, write_token_parts
from .shards import load_tokens, write_token_shards

__all__ = ["ALL_SPECIAL_TOKENS", "ROLES", "SPECIAL_TOKENS", "CorruptShardError", "TokenShards", "Tokenizer",
           "TokenizerError", "load_split", "load_tokens", "open_parts", "write_token_parts", "write_token_shards"]
