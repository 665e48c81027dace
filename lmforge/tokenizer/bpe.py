"""The tokenizer: a byte-level BPE and its special tokens (chat rendering: lmforge/chat_format.py).

    from lmforge.tokenizer import Tokenizer, write_token_shards, load_tokens
    tok = Tokenizer.train(texts, cfg.tokenizer)          # cfg: lmforge.config.Config
    tok.save("runs/tiny/tokenizer")                      # tokenizer.json + tokenizer_config.json
    tok = Tokenizer.load("runs/tiny/tokenizer")
    ids, loss_mask = tok.render_chat([{"role": "user", "content": "Hi"}], add_generation_prompt=True)
    meta = write_token_shards(tok, docs, Path("runs/tiny/data/tokens"), val_fraction=0.02, seed=1337)
    train = load_tokens("runs/tiny/data/tokens/train.bin", meta["dtype"])

The heavy lifting is the Hugging Face `tokenizers` library (Rust): a BPE model over the
256 byte values, so every Unicode string encodes and decodes back exactly, with a
GPT-4-style split regex in front so merges never cross word, number or punctuation
boundaries. The saved folder loads unchanged in `transformers.AutoTokenizer`.

Special tokens take the first ids, in this fixed order (they do not move when
vocab_size changes):

    0 <|bos|>   1 <|end|>   2 <|system|>   3 <|user|>   4 <|assistant|>   5 <|pad|>
    6 <|tool_call|>   7 <|tool_call_end|>   8 <|tool|>

The last three (tool use, lmforge/chat_format.py) came later: a tokenizer saved before them
still loads, with `has_tools` false, and chats without tools.

Ordinary text never produces them: `encode(text)` spells "<|user|>" out as plain
characters, so a user cannot inject a control token. Only `allow_special=True` (and the
chat template route below) turns that text into the special id.

Chat rendering (render_chat, the loss mask, tool calls and the Jinja chat template that
transformers reads) lives in lmforge/chat_format.py; encoding the template's string with
special tokens allowed gives the same ids as `render_chat`, except for content that itself
contains special-token text, which render_chat always keeps as plain characters (newer
transformers do the same). Trust `render_chat` for training and serving.

Run the tests with `python -m pytest tests/test_tokenizer.py -q`. Token shards: shards.py, parts.py.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable

import numpy as np
import tokenizers
from tokenizers import Regex, decoders, models, pre_tokenizers, trainers

from ..chat_format import (CHAT_TEMPLATE, FORMAT_SAMPLE_COPIES, FORMAT_SAMPLES, LEGACY_CHAT_TEMPLATE,
                                  TOOL_TOKENS, ChatFormatError, render)
from ..config import TokenizerConfig
from ..files import atomic_write_bytes

SPECIAL_TOKENS = ("<|bos|>", "<|end|>", "<|system|>", "<|user|>", "<|assistant|>", "<|pad|>")
ALL_SPECIAL_TOKENS = SPECIAL_TOKENS + TOOL_TOKENS     # ids 0..8; tokenizers from before tool use stop at 5
ROLES = ("system", "user", "assistant", "tool")

# The GPT-4 (cl100k) style pre-tokenizer split, one alternative per line; the first
# alternative that matches at a position wins.
SPLIT_PATTERN = "|".join([
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)",   # English contractions stay whole: "don" + "'t"
    r"[^\r\n\p{L}\p{N}]?\p{L}+",        # a run of letters, with one leading space or symbol
    r"\p{N}{1,3}",                      # numbers in groups of at most three digits
    r" ?[^\s\p{L}\p{N}]+[\r\n]*",       # punctuation runs, optional leading space, trailing newlines
    r"\s*[\r\n]+",                      # newlines, with the whitespace before them
    r"\s+(?!\S)",                       # whitespace, leaving the last space to the next word
    r"\s+",                             # any remaining whitespace
])

# What transformers writes for "no limit on the input length".
_NO_MAX_LENGTH = int(1e30)


class TokenizerError(ValueError):
    """A tokenizer problem, phrased as one line for the user."""


def _byte_of_char() -> dict[str, int]:
    """The inverse of the byte-level alphabet: which byte each vocab character stands for.

    Byte-level BPE stores bytes as printable characters so that the vocab is valid
    JSON text: printable Latin-1 bytes stand for themselves, and every other byte
    (controls, space, 0x7F-0xA0, 0xAD) is shifted to chr(256 + n) in byte order.
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table = {chr(b): b for b in printable}
    shifted = 0
    for b in range(256):
        if b not in printable:
            table[chr(256 + shifted)] = b
            shifted += 1
    return table


_BYTE_OF_CHAR = _byte_of_char()


class Tokenizer:
    """A trained byte-level BPE with lmforge's special tokens. Build with train() or load()."""

    def __init__(self, tokenizer_json: str, model_max_length: int | None = None):
        # Two Rust tokenizers from the same JSON: `_plain` treats special-token text as
        # ordinary characters, `_special` matches it. The flag lives on the instance
        # (it is not saved in tokenizer.json), so two instances keep encode() free of
        # shared mutable state and safe to call from several threads.
        self._json = tokenizer_json
        self._plain = tokenizers.Tokenizer.from_str(tokenizer_json)
        self._plain.encode_special_tokens = True
        self._special = tokenizers.Tokenizer.from_str(tokenizer_json)
        self.model_max_length = model_max_length

        self.special_ids = {}
        for token in ALL_SPECIAL_TOKENS:
            token_id = self._special.token_to_id(token)
            if token_id is None and token in SPECIAL_TOKENS:
                raise TokenizerError(f"tokenizer has no special token {token}")
            if token_id is not None:
                self.special_ids[token] = token_id
        self.bos_id = self.special_ids["<|bos|>"]
        self.end_id = self.special_ids["<|end|>"]
        self.system_id = self.special_ids["<|system|>"]
        self.user_id = self.special_ids["<|user|>"]
        self.assistant_id = self.special_ids["<|assistant|>"]
        self.pad_id = self.special_ids["<|pad|>"]
        # None on a tokenizer from before tool use (tools are then off)
        self.tool_call_id = self.special_ids.get("<|tool_call|>")
        self.tool_call_end_id = self.special_ids.get("<|tool_call_end|>")
        self.tool_id = self.special_ids.get("<|tool|>")
        self.has_tools = None not in (self.tool_call_id, self.tool_call_end_id, self.tool_id)
        if not self.has_tools:
            self.tool_call_id = self.tool_call_end_id = self.tool_id = None
        self._role_ids = {"system": self.system_id, "user": self.user_id, "assistant": self.assistant_id}
        if self.has_tools:
            self._role_ids["tool"] = self.tool_id
        self._special_of_id = {i: t for t, i in self.special_ids.items()}
        self.vocab_size = self._special.get_vocab_size(with_added_tokens=True)

    # Pickling the Rust tokenizer goes through its JSON and so would drop the
    # encode_special_tokens flag; a DataLoader worker would then let users inject
    # control tokens. Rebuild both instances from the JSON instead.
    def __getstate__(self):
        return {"tokenizer_json": self._json, "model_max_length": self.model_max_length}

    def __setstate__(self, state):
        self.__init__(state["tokenizer_json"], state["model_max_length"])

    # ------------------------------------------------------------------ train / save / load

    @classmethod
    def train(cls, texts: Iterable[str], cfg: TokenizerConfig, show_progress: bool = False,
              special_tokens: tuple[str, ...] = ALL_SPECIAL_TOKENS) -> "Tokenizer":
        """Learn BPE merges from `texts` (and, with the tool tokens, from the tool format's own
        strings: chat_format.FORMAT_SAMPLES); the vocab holds cfg.vocab_size tokens at most.
        (`special_tokens=SPECIAL_TOKENS` makes a tokenizer as runs from before tool use had.)"""
        rust = tokenizers.Tokenizer(models.BPE())
        # No normalizer: text goes in byte for byte, which is what makes decode exact.
        rust.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(SPLIT_PATTERN), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ])
        rust.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=cfg.vocab_size,
            min_frequency=cfg.min_frequency,
            special_tokens=list(special_tokens),  # the trainer gives these ids 0..8, in order
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # all 256 bytes, seen or not
            show_progress=show_progress,
        )

        extras = [sample for sample in FORMAT_SAMPLES for _ in range(FORMAT_SAMPLE_COPIES)] \
            if set(TOOL_TOKENS) <= set(special_tokens) else []

        # Feed the Rust trainer lists of strings: one Python call per thousand texts.
        def batches():
            batch = list(extras)
            for text in texts:
                batch.append(text)
                if len(batch) == 1000:
                    yield batch
                    batch = []
            if batch:
                yield batch

        rust.train_from_iterator(batches(), trainer)
        return cls(rust.to_str())

    def save(self, directory: str | os.PathLike, model_max_length: int | None = None) -> None:
        """Write tokenizer.json and tokenizer_config.json (with the chat template) atomically."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        if model_max_length is not None:
            self.model_max_length = model_max_length
        max_length = self.model_max_length if self.model_max_length is not None else _NO_MAX_LENGTH

        # What transformers.AutoTokenizer reads: the special tokens by role, the chat
        # template, and no "clean up" of spaces on decode (that would break exact decode).
        config = {
            "tokenizer_class": "PreTrainedTokenizerFast",
            "bos_token": "<|bos|>",
            "eos_token": "<|end|>",
            "pad_token": "<|pad|>",
            "unk_token": None,
            "additional_special_tokens": self.additional_special_tokens(),
            "added_tokens_decoder": {
                str(token_id): {
                    "content": token,
                    "lstrip": False,
                    "normalized": False,
                    "rstrip": False,
                    "single_word": False,
                    "special": True,
                }
                for token, token_id in self.special_ids.items()
            },
            "model_max_length": max_length,
            "clean_up_tokenization_spaces": False,
            "chat_template": CHAT_TEMPLATE if self.has_tools else LEGACY_CHAT_TEMPLATE,
        }
        pretty_json = json.dumps(json.loads(self._json), indent=2, ensure_ascii=False)
        atomic_write_bytes(directory / "tokenizer.json", pretty_json.encode("utf-8"))
        atomic_write_bytes(directory / "tokenizer_config.json", json.dumps(config, indent=2).encode("utf-8"))

    @classmethod
    def load(cls, directory: str | os.PathLike) -> "Tokenizer":
        """Read a folder written by save(); a missing or broken file raises TokenizerError naming it."""
        directory = Path(directory)
        tokenizer_path = directory / "tokenizer.json"
        config_path = directory / "tokenizer_config.json"
        for path in (tokenizer_path, config_path):
            if not path.is_file():
                raise TokenizerError(f"{path}: missing (train the tokenizer first: lmforge tokenizer)")

        try:
            config = json.loads(config_path.read_text(encoding="utf-8"))
            if not isinstance(config, dict):
                raise ValueError("not a JSON object")
        except (ValueError, UnicodeDecodeError) as e:
            raise TokenizerError(f"{config_path}: not a valid tokenizer config: {_one_line(e)}") from None

        try:
            tokenizer_json = tokenizer_path.read_text(encoding="utf-8")
            tokenizers.Tokenizer.from_str(tokenizer_json)  # parse once here to report the right file
        except Exception as e:  # the Rust parser raises plain Exception
            raise TokenizerError(f"{tokenizer_path}: not a valid tokenizer: {_one_line(e)}") from None

        max_length = config.get("model_max_length")
        if not isinstance(max_length, int) or max_length >= _NO_MAX_LENGTH:
            max_length = None
        try:
            return cls(tokenizer_json, max_length)
        except TokenizerError as e:
            raise TokenizerError(f"{tokenizer_path}: {e}") from None

    # ------------------------------------------------------------------ encode / decode

    def encode(self, text: str, allow_special: bool = False) -> list[int]:
        """Token ids of `text`. Special-token text becomes special ids only with allow_special."""
        if not isinstance(text, str):
            raise TokenizerError(f"encode expects a str, got {type(text).__name__}")
        rust = self._special if allow_special else self._plain
        try:
            return rust.encode(text, add_special_tokens=False).ids
        except TypeError:
            # The only str the Rust side refuses is one that is not valid UTF-8.
            raise TokenizerError("text is not valid Unicode (it contains a lone surrogate)") from None

    def encode_batch(self, texts: list[str], allow_special: bool = False) -> list[list[int]]:
        """encode() for many texts at once, in parallel in Rust."""
        texts = list(texts)
        for index, text in enumerate(texts):
            if not isinstance(text, str):
                raise TokenizerError(f"encode_batch: text {index} is a {type(text).__name__}, not a str")
        rust = self._special if allow_special else self._plain
        try:
            # The "fast" variant skips computing character offsets, which we never use.
            return [encoding.ids for encoding in rust.encode_batch_fast(texts, add_special_tokens=False)]
        except TypeError:
            raise TokenizerError("encode_batch: a text is not valid Unicode (it contains a lone surrogate)") from None

    def decode(self, ids: Iterable[int], skip_special: bool = False) -> str:
        """The text of `ids` (a list, numpy array or tensor); special tokens are shown unless skipped."""
        ids = [int(i) for i in ids]
        # The Rust decoder silently drops unknown ids; an id out of range is a bug upstream.
        if ids and (min(ids) < 0 or max(ids) >= self.vocab_size):
            bad = next(i for i in ids if i < 0 or i >= self.vocab_size)
            raise TokenizerError(f"decode: token id {bad} is outside the vocab (0..{self.vocab_size - 1})")
        return self._special.decode(ids, skip_special_tokens=skip_special)

    def token_bytes(self, token_id: int) -> bytes:
        """The raw bytes one token stands for (a special token: its UTF-8 text)."""
        token_id = int(token_id)
        if token_id in self._special_of_id:
            return self._special_of_id[token_id].encode("utf-8")
        token = self._special.id_to_token(token_id)
        if token is None:
            raise TokenizerError(f"token id {token_id} is outside the vocab (0..{self.vocab_size - 1})")
        return bytes(_BYTE_OF_CHAR[char] for char in token)

    def byte_lengths(self) -> np.ndarray:
        """(vocab_size,) int64: how many bytes of text each token stands for; special tokens 0,
        because they are markup, not text (bits per byte counts only the text's bytes)."""
        lengths = np.zeros(self.vocab_size, dtype=np.int64)
        for token_id in range(self.vocab_size):
            if token_id not in self._special_of_id:
                lengths[token_id] = len(self.token_bytes(token_id))
        return lengths

    def id_to_token(self, token_id: int) -> str:
        """A readable label for one token, e.g. " Tesla", "\\n\\n", "\\xc3" for half a character."""
        raw = self.token_bytes(token_id)
        # A token can end in the middle of a multi-byte character; show those bytes as
        # \\xNN instead of a replacement character, and escape controls so a label
        # stays on one line in a bar chart.
        text = raw.decode("utf-8", errors="backslashreplace")
        return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)

    # ------------------------------------------------------------------ chat

    def role_id(self, role: str) -> int:
        return self._role_ids[role]

    def additional_special_tokens(self) -> list[str]:
        """The special tokens other than bos, end and pad, as transformers lists them."""
        return [t for t in self.special_ids if t not in ("<|bos|>", "<|end|>", "<|pad|>")]

    def render_chat(self, messages: list[dict], add_generation_prompt: bool = False,
                    tools: list | None = None) -> tuple[list[int], list[int]]:
        """Ids of a conversation and its loss mask (1 on what the assistant says: its content, its
        tool calls and the <|end|> closing its answer); `tools`: JSON schemas declared to the
        model. The format is lmforge/chat_format.py's."""
        try:
            return render(self, messages, add_generation_prompt, tools)
        except ChatFormatError as err:
            raise TokenizerError(str(err)) from None


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split())
