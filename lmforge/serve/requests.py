"""The request bodies of the OpenAI-compatible API (lmforge/serve/api.py), as pydantic models.

Unknown fields are ignored, as OpenAI's other compatible servers do; known ones are checked
(a wrong type or range is a 400 naming the field). The tool fields are lmforge/serve/tools.py's.
"""
from __future__ import annotations

from typing import Literal, Union

from pydantic import BaseModel, ConfigDict, Field, model_validator

from . import tools as tool_api

MAX_SEED = 2**63 - 1


class TextPart(BaseModel):
    type: Literal["text"]
    text: str


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "user", "assistant", "developer", "tool"]
    content: Union[str, list[TextPart], None] = None
    tool_calls: list[tool_api.ToolCall] | None = Field(None, max_length=tool_api.MAX_TOOLS)
    tool_call_id: str | None = Field(None, max_length=256)

    @model_validator(mode="after")
    def content_or_calls(self):
        if self.content is None and not (self.role == "assistant" and self.tool_calls):
            raise ValueError(f"a {self.role} message needs content (only an assistant message with tool_calls "
                             "may leave it out)")
        return self

    def text(self) -> str:
        if self.content is None:
            return ""
        return self.content if isinstance(self.content, str) else "".join(part.text for part in self.content)

    def plain(self) -> dict:
        """The message as render_chat takes it ("developer" is OpenAI's newer name for system)."""
        message = {"role": "system" if self.role == "developer" else self.role, "content": self.text()}
        if self.role == "assistant" and self.tool_calls:
            message["tool_calls"] = [call.model_dump() for call in self.tool_calls]
        return message


class StreamOptions(BaseModel):
    include_usage: bool = False


class SamplingRequest(BaseModel):
    """Fields shared by both completion endpoints. Unknown fields are ignored, as OpenAI's
    other compatible servers do; known ones are checked."""
    model_config = ConfigDict(extra="ignore")
    model: str
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    top_k: int = Field(0, ge=0, le=1_000_000, description="extra: keep the k most likely tokens; 0 = off")
    min_p: float = Field(0.0, ge=0.0, le=1.0, description="extra: drop tokens below min_p x the top probability")
    n: int = Field(1, ge=1, le=128)
    seed: int | None = Field(None, ge=0, le=MAX_SEED)
    stop: Union[str, list[str], None] = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = None


# Validating a message or content part costs pydantic some 5 µs, on the event loop: 1 MiB of
# tiny messages would hold it for 150 ms. This many, together, is the most a request may hold.
MAX_CHAT_ITEMS = 1024


class ChatRequest(SamplingRequest):
    messages: list[Message] = Field(min_length=1)
    tools: list[tool_api.ToolDef] | None = Field(None, max_length=tool_api.MAX_TOOLS)
    tool_choice: tool_api.ToolChoice | None = None

    @model_validator(mode="before")
    @classmethod
    def few_enough_items(cls, data):
        """Counted on the raw JSON, before any of it is validated."""
        messages = data.get("messages") if isinstance(data, dict) else None
        if isinstance(messages, list):
            items = sum(1 + sum(len(m[key]) for key in ("content", "tool_calls") if isinstance(m.get(key), list))
                        if isinstance(m, dict) else 1 for m in messages)
            if items > MAX_CHAT_ITEMS:
                raise ValueError(f"messages: {items} messages, content parts and tool calls; the limit is "
                                 f"{MAX_CHAT_ITEMS}")
        return data


class CompletionRequest(SamplingRequest):
    prompt: Union[str, list[str]]
