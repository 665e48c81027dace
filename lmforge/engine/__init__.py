"""The inference engine: the one place where token ids come out of a model.

    from lmforge.engine import generate, stream, SamplingParams, Engine, BackgroundEngine, fast_path

    sampling.py           SamplingParams and the samplers (temperature, top-k, top-p, min-p)
    sequence.py           one request: its tokens, text stream, events and result (Generation)
    cache.py              the KV cache (KVCache, make_cache)
    inference_weights.py  the fast inference path (fast_path, InferenceWeights)
    batching.py           Engine (continuous batching), BackgroundEngine, generate(), stream()
    tool_loop.py          the one tool loop (ToolSession): calls run mid-generation

Finding and loading a run's models is lmforge/checkpoints.py; speculative decoding is
lmforge/speculative.py.
"""
from .batching import GENERATE_MAX_BATCH, BackgroundEngine, Engine, drain_events, generate, stream, tool_session
from .cache import KVCache, make_cache
from .inference_weights import InferenceWeights, fast_path, inference_weights
from .sampling import SamplingParams, draw, next_token_probs, sample_next, sample_rows
from .sequence import Generation, Sequence, StreamEvent, TextStream
from .tool_loop import ToolSession

__all__ = ["GENERATE_MAX_BATCH", "BackgroundEngine", "Engine", "drain_events", "generate", "stream", "tool_session",
           "KVCache", "make_cache", "InferenceWeights", "fast_path", "inference_weights", "SamplingParams", "draw",
           "next_token_probs", "sample_next", "sample_rows", "Generation", "Sequence", "StreamEvent", "TextStream",
           "ToolSession"]
