"""Config sections for using a model: tools, generate, report, eval, serve.

    from lmforge.config import ServeConfig, BUILTIN_TOOLS
"""
from __future__ import annotations

from dataclasses import dataclass

from .fields import opt

# Tool names every tool list accepts beside module:function (lmforge/tools/registry.py resolves them).
BUILTIN_TOOLS = ("calculator", "lookup")


@dataclass
class ToolsConfig:
    """Tool use (lmforge/tools/): limits of the shared tool loop, the lookup index, tools of your own."""
    extra: list = opt([], help="your own tools as module:function: a callable that takes the call's JSON arguments "
                      "as keywords and returns text (optional attributes: parameters, description)")
    timeout_s: float = opt(5.0, lo=0.001, hi=600.0, help="a tool still running after this gives an error result")
    max_calls: int = opt(6, lo=1, hi=64, help="tool calls per answer; further calls get an error result")
    max_result_chars: int = opt(600, lo=16, hi=100_000, help="a longer tool result is cut")
    wait_ms: float = opt(20.0, lo=0.0, hi=10_000.0, help="how long a decoding step waits for a running tool before "
                         "that row steps out of the batch (the others decode on; it rejoins with its result)")
    workers: int = opt(4, lo=1, hi=256, help="threads that run tools")
    lookup_k: int = opt(2, lo=1, hi=20, help="passages a lookup returns")
    lookup_chars: int = opt(160, lo=16, hi=4000, help="each passage is cut to this many characters")
    lookup_practice: int = opt(1200, lo=0, hi=100_000,
                               help="practice entities on the reference shelf: invented names that exist nowhere "
                                    "else, which the lookup training conversations ask about")
    lookup_practice_mix: str = opt("world", choices=["world", "names"],
                                   help="kinds of the practice entities: world = the world's shares at any count, "
                                        "names with a middle syllable once a kind's share of plain names is used; "
                                        "names = the world's shares only while a kind's plain names last (persons "
                                        "and rivers then fill the rest: the shelf of runs made before this option)")
    lookup_corpus: bool = opt(True, help="index the run's cleaned corpus beside the reference shelf")
    lookup_sources: list = opt([], help="your own documents for the lookup index: folder:PATH, jsonl:PATH[#column] "
                               "or parquet:PATH[#column]")


@dataclass
class GenerateConfig:
    temperature: float = opt(0.8, lo=0.0, hi=100.0)
    top_k: int = opt(0, lo=0, help="0 = off")
    top_p: float = opt(1.0, lo=0.0, hi=1.0)
    max_new_tokens: int = opt(64, lo=1)


@dataclass
class ReportConfig:
    fact_eval_limit: int = opt(600, lo=1, help="facts checked per evaluation")
    samples: int = opt(6, lo=0, help="sample completions shown")


@dataclass
class EvalConfig:
    """`lmforge eval`: standard benchmarks (lmforge/evals/standard.py)."""
    tasks: list = opt(["bpb", "hellaswag", "arc_easy", "arc_challenge", "mmlu", "gsm8k"],
                      help="bpb (validation bits per byte), hellaswag, arc_easy, arc_challenge, mmlu, gsm8k; "
                           "name=PATH reads that file or folder instead of looking in data_dir")
    data_dir: str = opt("", help="folder with the official files (hellaswag_val.jsonl, ARC-Easy-Test.jsonl, "
                        "ARC-Challenge-Test.jsonl, mmlu/*_test.csv, gsm8k test.jsonl); empty = <run>/eval_data")
    hub: bool = opt(False, help="a task with no local file is read from the Hugging Face hub (needs `datasets` "
                    "and a network)")
    limit: int = opt(0, lo=0, help="items per task (evenly spread); 0 = all")
    batch_size: int = opt(32, lo=1, help="continuations scored per forward")
    bpb_windows: int = opt(64, lo=1, help="validation windows of seq_len tokens for bits per byte")
    gsm8k_max_new_tokens: int = opt(192, lo=1, help="answer budget per GSM8K problem (greedy)")
    gsm8k_shots: int = opt(0, lo=0, hi=16, help="worked examples from the file's first rows put before each "
                           "question (those rows are then not scored)")


@dataclass
class ServeConfig:
    """`lmforge serve`: where it listens and the limits that keep one request from hurting others."""
    host: str = opt("127.0.0.1", help="bind address; 127.0.0.1 = this machine only")
    port: int = opt(8000, lo=0, hi=65_535)
    api_key: str = opt("", help="bearer key clients must send; empty = api_key_file, else $LMFORGE_API_KEY, "
                                "else none (a key on the command line shows in `ps`: prefer the file or variable)")
    api_key_file: str = opt("", help="file whose first line is the API key")
    max_batch: int = opt(32, lo=1, hi=1024, help="sequences decoded together")
    max_waiting: int = opt(512, lo=1, help="queued sequences before new requests get 503")
    max_messages: int = opt(64, lo=1, hi=1024, help="messages per chat request")
    max_prompt_tokens: int = opt(0, lo=0, help="0 = the model's seq_len - 1")
    max_tokens: int = opt(512, lo=1, help="largest max_tokens a request may ask for")
    default_max_tokens: int = opt(128, lo=1)
    max_n: int = opt(8, lo=1, help="largest n (choices per request)")
    max_stop: int = opt(4, lo=0, help="stop strings per request")
    max_request_bytes: int = opt(1 << 20, lo=1024, help="largest request body; larger is 413, checked while reading")
    max_prompt_chars: int = opt(100_000, lo=1, help="characters of message content (or prompt text) per request, "
                                                    "checked before tokenizing")
    max_concurrent_per_key: int = opt(256, lo=1, help="requests in flight per API key (one bucket without a key); "
                                                      "more get 429 with Retry-After")
    read_timeout_s: float = opt(30.0, lo=0.1, hi=3600.0, help="a client must send its request headers, and then "
                                                              "its body, within this many seconds each (slowloris)")
    builtin_tools: list = opt([], help="tools the server runs itself (calculator, lookup, module:function), offered "
                              "in every chat request beside the client's own")
