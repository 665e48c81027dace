// The web chat page's script (index.html): a file of its own because the CSP allows no inline script.
// It talks to the same OpenAI-compatible API as any client and renders every text as text, never HTML.
// Tools the server runs itself (serve.builtin_tools) arrive as delta.builtin_tool_call and
// delta.builtin_tool_result; each call is shown in the answer, where it happened, with its result.
"use strict";
const $ = (id) => document.getElementById(id);
let history = [];          // [{role, content}] of finished turns, as the API takes them
let modelName = null;
let controller = null;     // the AbortController of the answer being streamed

const keyBox = $("api-key");
keyBox.value = localStorage.getItem("lmforge-api-key") || "";
keyBox.addEventListener("change", () => { localStorage.setItem("lmforge-api-key", keyBox.value); loadModel(); });
$("temperature").addEventListener("input", () => { $("temperature-value").textContent = $("temperature").value; });

function headers() {
  const h = {"Content-Type": "application/json"};
  if (keyBox.value) h["Authorization"] = "Bearer " + keyBox.value;
  return h;
}

async function loadModel() {
  try {
    const response = await fetch("/v1/models", {headers: headers()});
    const data = await response.json();
    if (!response.ok) throw new Error(data.error ? data.error.message : response.statusText);
    modelName = data.data[0].id;
    $("model").textContent = "model: " + modelName;
  } catch (err) {
    $("model").textContent = "cannot list models: " + err.message;
  }
}

function addBubble(role, text) {
  const div = document.createElement("div");
  div.className = "msg " + role;
  const who = document.createElement("div");
  who.className = "who";
  who.textContent = role;
  const body = document.createElement("div");
  body.className = "content";
  body.textContent = text;
  div.append(who, body);
  $("messages").append(div);
  $("messages").scrollTop = $("messages").scrollHeight;
  return body;
}

function render() {
  $("messages").replaceChildren();
  for (const m of history) addBubble(m.role, m.content);
}

function setBusy(busy) {
  $("send").disabled = busy;
  $("stop").disabled = !busy;
  $("regenerate").disabled = busy || !history.some((m) => m.role === "assistant");
}

// Stream one answer to the current history; the answer (even a stopped one) joins the history.
async function answer() {
  const messages = [];
  const system = $("system").value.trim();
  if (system) messages.push({role: "system", content: system});
  messages.push(...history);
  const body = addBubble("assistant", "");
  setBusy(true);
  controller = new AbortController();
  const started = performance.now();
  let firstTokenAt = null, text = "", tokens = 0, chunks = 0, reason = null;
  // the answer's text between tool calls goes into spans, each call into a box of its own
  let segment = document.createElement("span"), segmentText = "";
  body.append(segment);
  const results = {};
  try {
    const response = await fetch("/v1/chat/completions", {
      method: "POST", headers: headers(), signal: controller.signal,
      body: JSON.stringify({model: modelName, messages, stream: true, stream_options: {include_usage: true},
                            temperature: parseFloat($("temperature").value),
                            max_tokens: parseInt($("max-tokens").value, 10) || 128}),
    });
    if (!response.ok) {
      const data = await response.json().catch(() => ({}));
      throw new Error(data.error ? data.error.message : response.statusText);
    }
    const reader = response.body.getReader();
    const decoder = new TextDecoder();   // {stream: true} below keeps split UTF-8 bytes for the next read
    let buffer = "";
    for (;;) {
      const {value, done} = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, {stream: true});
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const line = buffer.slice(0, cut).trim();
        buffer = buffer.slice(cut + 2);
        if (!line.startsWith("data: ")) continue;
        const payload = line.slice(6);
        if (payload === "[DONE]") continue;
        const event = JSON.parse(payload);
        if (event.error) throw new Error(event.error.message);
        if (event.usage) tokens = event.usage.completion_tokens;
        for (const choice of event.choices) {
          const delta = choice.delta || {};
          if (delta.content) {
            if (firstTokenAt === null) firstTokenAt = performance.now();
            text += delta.content;
            segmentText += delta.content;
            chunks += 1;
            segment.textContent = segmentText;
            $("messages").scrollTop = $("messages").scrollHeight;
          }
          if (delta.builtin_tool_call) {
            const call = delta.builtin_tool_call;
            const box = document.createElement("div");
            box.className = "tool";
            const line = document.createElement("div");
            line.className = "tool-call";
            line.textContent = call.name + " " + call.arguments;
            const result = document.createElement("div");
            result.className = "tool-result";
            result.textContent = "…";
            box.append(line, result);
            body.append(box);
            results[call.id] = result;
            segment = document.createElement("span");
            segmentText = "";
            body.append(segment);
          }
          if (delta.builtin_tool_result && results[delta.builtin_tool_result.id]) {
            const result = results[delta.builtin_tool_result.id];
            result.textContent = "→ " + delta.builtin_tool_result.content;
            if (delta.builtin_tool_result.error) result.classList.add("error");
          }
          if (choice.finish_reason) reason = choice.finish_reason;
        }
        showSpeed(started, firstTokenAt, tokens || chunks, "");
      }
    }
    const notes = {length: " · stopped at max tokens", invalid_tool_call: " · the model wrote a malformed tool call"};
    showSpeed(started, firstTokenAt, tokens || chunks, notes[reason] || "");
  } catch (err) {
    if (err.name === "AbortError") {
      showSpeed(started, firstTokenAt, chunks, " · stopped");
    } else {
      body.parentElement.classList.add("error");
      text = text || "";
      $("status").textContent = "error: " + err.message;
    }
  } finally {
    controller = null;
    if (!body.parentElement.classList.contains("error")) history.push({role: "assistant", content: text});
    setBusy(false);
  }
}

function showSpeed(started, firstTokenAt, tokens, note) {
  if (firstTokenAt === null) return;
  const seconds = Math.max((performance.now() - firstTokenAt) / 1000, 1e-3);
  const ttft = (firstTokenAt - started) / 1000;
  $("status").textContent = `${tokens} tokens · ${(tokens / seconds).toFixed(1)} tokens/s · ` +
                            `first token after ${ttft.toFixed(2)} s${note}`;
}

function send() {
  const text = $("input").value.trim();
  if (!text || controller) return;
  $("input").value = "";
  history.push({role: "user", content: text});
  addBubble("user", text);
  answer();
}

$("send").addEventListener("click", send);
$("input").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); send(); }
});
$("stop").addEventListener("click", () => { if (controller) controller.abort(); });
$("regenerate").addEventListener("click", () => {
  if (controller) return;
  while (history.length && history[history.length - 1].role === "assistant") history.pop();
  render();
  answer();
});
$("clear").addEventListener("click", () => {
  if (controller) controller.abort();
  history = [];
  render();
  $("status").textContent = "";
  setBusy(false);
});
loadModel();
