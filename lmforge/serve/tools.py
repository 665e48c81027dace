"""Tool calls on the OpenAI API: request fields, which tools a request offers, and the response parts.

    POST /v1/chat/completions {"tools": [{"type": "function", "function": {"name": "weather",
                                          "parameters": {...}}}], "tool_choice": "auto", "messages": [...]}

A chat request may offer its own tools (`tools`, OpenAI's function schema) and steer them
with `tool_choice` ("auto", "none", "required" or {"type": "function", "function": {"name"}}).
The server adds the tools it runs itself (`serve.builtin_tools`; a client tool of the same
name wins). Both are declared to the model in the chat template's tools line, and every
sequence gets a ToolSession (lmforge/engine/tool_loop.py):

  - a call to a client's tool ends the choice with finish_reason "tool_calls" and the call in
    `message.tool_calls` (streamed: one `delta.tool_calls` chunk with the whole call); the
    client runs it and sends the result back as a `tool` message;
  - a call to a built-in tool runs on the server, mid-answer, and the answer goes on; its
    calls and results are reported beside the answer (`message.builtin_tool_calls`, streamed
    as `delta.builtin_tool_call` and `delta.builtin_tool_result`: fields OpenAI's clients
    ignore, which the web chat shows);
  - a malformed call (not parsable, or naming no offered tool) ends the choice with
    finish_reason "invalid_tool_call" and the reason in `tool_call_error`: never a 500.

"required" starts the answer with <|tool_call|>; a named function with <|tool_call|> and
its name. "none" declares no tools; with no tools offered a <|tool_call|> ends the answer
("stop"), as a role token does.
"""
from __future__ import annotations

from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field

MAX_TOOLS = 64
TOOL_NAME = r"^[A-Za-z0-9_-]{1,64}$"


class FunctionCall(BaseModel):
    model_config = ConfigDict(extra="ignore")
    name: str = Field(pattern=TOOL_NAME)
    arguments: Union[str, dict[str, Any]] = "{}"


class ToolCall(BaseModel):
    model_config = ConfigDict(extra="ignore")
    id: str | None = Field(None, max_length=256)
    type: Literal["function"] = "function"
    function: FunctionCall


class FunctionDef(BaseModel):
    model_config = ConfigDict(extra="ignore")
    name: str = Field(pattern=TOOL_NAME)
    description: str | None = None
    parameters: dict[str, Any] | None = None


class ToolDef(BaseModel):
    type: Literal["function"]
    function: FunctionDef


class NamedFunction(BaseModel):
    name: str = Field(pattern=TOOL_NAME)


class NamedToolChoice(BaseModel):
    type: Literal["function"]
    function: NamedFunction


ToolChoice = Union[Literal["none", "auto", "required"], NamedToolChoice]


def declared(builtin, tools: list[ToolDef] | None, choice) -> tuple[list[dict], set[str]]:
    """(schemas the model is told about, names the client runs itself)."""
    if choice == "none":
        return [], set()
    client = [t.model_dump(exclude_none=True) for t in tools or []]
    client_names = {t["function"]["name"] for t in client}
    schemas = [s for s in (builtin.schemas() if builtin is not None else [])
               if s["function"]["name"] not in client_names]
    return schemas + client, client_names


def forced_prefix(tokenizer, schemas: list[dict], choice) -> list[int]:
    """The tokens tool_choice makes the answer begin with; ValueError for a name not offered."""
    if choice == "required":
        if not schemas:
            raise ValueError("tool_choice is 'required' but no tools are offered")
        return [tokenizer.tool_call_id]
    if isinstance(choice, NamedToolChoice):
        name = choice.function.name
        if name not in {s["function"]["name"] for s in schemas}:
            raise ValueError(f"tool_choice names {name!r}, which is not among the tools offered")
        return [tokenizer.tool_call_id, *tokenizer.encode(name + " ")]
    return []


def client_call(record: dict) -> dict:
    """A call record (engine/tool_loop.py) as OpenAI's message.tool_calls entry."""
    return {"id": record["id"], "type": "function",
            "function": {"name": record["name"], "arguments": record["arguments"]}}


def builtin_call(record: dict) -> dict:
    return {"id": record["id"], "name": record["name"], "arguments": record["arguments"],
            "output": record.get("result"), "error": bool(record.get("error"))}


def finish_reason(reason: str | None) -> str:
    if reason in ("tool_calls", "invalid_tool_call", "length"):
        return reason
    return "stop"


def chat_message(seq) -> dict:
    """The assistant message of a finished choice, with its tool calls."""
    result = seq.result()
    message: dict = {"role": "assistant", "content": result.text}
    session = seq.tools
    if session is None:
        return message
    records = session.records
    if result.finish_reason == "tool_calls" and records:
        message["tool_calls"] = [client_call(records[-1])]
        message["content"] = result.text or None
    builtins = [builtin_call(r) for r in records if r["name"] not in session.client_tools and not r["malformed"]]
    if builtins:
        message["builtin_tool_calls"] = builtins
    if result.finish_reason == "invalid_tool_call" and records:
        message["tool_call_error"] = records[-1].get("detail", "malformed tool call")
    return message


def stream_delta(event, session) -> dict | None:
    """The chunk delta for a tool event of a streamed choice (None: nothing to send)."""
    tool = event.tool
    if tool["type"] == "call":
        if tool.get("malformed"):
            return None
        if tool["name"] in session.client_tools:
            return {"tool_calls": [{"index": 0, "id": tool["id"], "type": "function",
                                    "function": {"name": tool["name"], "arguments": tool["arguments"]}}]}
        return {"builtin_tool_call": {"id": tool["id"], "name": tool["name"], "arguments": tool["arguments"]}}
    return {"builtin_tool_result": {"id": tool["id"], "name": tool["name"], "content": tool["content"],
                                    "error": tool["error"]}}
