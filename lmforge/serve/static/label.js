// The labeling page's script (label.html): a file of its own because the CSP allows no inline script.
// Every text (prompts, answers, errors) is rendered as text, never HTML.
"use strict";
const $ = (id) => document.getElementById(id);
// the server's per-process token, written into the page; every write carries it
const TOKEN = document.querySelector("meta[name=label-token]").content;
let item = null;           // {id, prompt, candidates: [{text, ended}]}
let best = null;           // index of the best answer
let ranks = [];            // rank number per answer (1 = best; equal numbers tie), null = not yet ranked
let thumbs = [];           // "up" | "down" | null per answer
let busy = false;

function mode() { return document.querySelector("input[name=mode]:checked").value; }

function showProgress(p) {
  $("progress").textContent = `${p.labeled} / ${p.total} labeled` + (p.skipped ? ` · ${p.skipped} skipped` : "");
}

function setStatus(text, error = false) {
  $("status").textContent = text;
  $("status").className = error ? "error" : "";
}

// The label in the API's shape (0-based indices), or null while it is incomplete.
function label() {
  const n = item ? item.candidates.length : 0;
  if (mode() === "best") return best === null ? null : {kind: "best", best};
  if (mode() === "rank") {
    if (ranks.length !== n || ranks.some((r) => r === null)) return null;
    const levels = [...new Set(ranks)].sort((a, b) => a - b);
    return {kind: "rank", ranking: levels.map((level) => ranks.flatMap((r, i) => (r === level ? [i] : [])))};
  }
  return thumbs.some((t) => t !== null) ? {kind: "thumbs", thumbs} : null;
}

function refresh() {
  $("submit").disabled = busy || !item || label() === null;
  $("skip").disabled = busy || !item;
  document.querySelectorAll(".candidate").forEach((card, i) => {
    card.classList.toggle("chosen", mode() === "best" && best === i);
  });
}

function control(i) {
  const box = document.createElement("div");
  box.className = "control";
  if (mode() === "best") {
    const radio = document.createElement("input");
    radio.type = "radio"; radio.name = "best"; radio.id = `best-${i}`; radio.checked = best === i;
    radio.setAttribute("aria-label", `answer ${i + 1} is the best`);
    radio.addEventListener("change", () => { best = i; refresh(); });
    box.append(radio);
  } else if (mode() === "rank") {
    const select = document.createElement("select");
    select.id = `rank-${i}`;
    select.setAttribute("aria-label", `rank of answer ${i + 1}`);
    select.append(new Option("rank…", ""));
    for (let r = 1; r <= item.candidates.length; r++) select.append(new Option(String(r), String(r)));
    select.value = ranks[i] === null ? "" : String(ranks[i]);
    select.addEventListener("change", () => { ranks[i] = select.value ? parseInt(select.value, 10) : null; refresh(); });
    box.append(select);
  } else {
    for (const [value, glyph] of [["up", "▲ up"], ["down", "▼ down"]]) {
      const button = document.createElement("button");
      button.id = `${value}-${i}`; button.className = `thumb ${value}` + (thumbs[i] === value ? " on" : "");
      button.textContent = glyph;
      button.setAttribute("aria-label", `thumbs ${value} for answer ${i + 1}`);
      button.addEventListener("click", () => { thumbs[i] = thumbs[i] === value ? null : value; renderCandidates(); });
      box.append(button);
    }
  }
  return box;
}

const HINTS = {best: "Click the best answer (or press its number), then Submit (Enter).",
               rank: "Give every answer a rank, 1 = best; equal numbers are a tie.",
               thumbs: "Thumbs up for good answers, down for bad ones; each up is preferred to each down."};

function renderCandidates() {
  $("hint").textContent = HINTS[mode()];
  $("candidates").replaceChildren();
  item.candidates.forEach((candidate, i) => {
    const card = document.createElement("div");
    card.className = "candidate";
    card.dataset.index = i;
    const text = document.createElement("div");
    text.className = "text";
    const who = document.createElement("div");
    who.className = "who";
    who.textContent = `answer ${i + 1}`;
    if (!candidate.ended) {
      const cut = document.createElement("span");
      cut.className = "cut"; cut.textContent = "cut off"; cut.title = "the answer hit the length limit without ending";
      who.append(cut);
    }
    const body = document.createElement("div");
    body.className = "content";
    body.textContent = candidate.text;
    text.append(who, body);
    card.append(text, control(i));
    if (mode() === "best") card.addEventListener("click", (e) => { if (e.target.tagName !== "INPUT") pick(i); });
    $("candidates").append(card);
  });
  refresh();
}

function pick(i) {
  best = i;
  const radio = $(`best-${i}`);
  if (radio) radio.checked = true;
  refresh();
}

function show(next) {
  item = next;
  if (!item) {
    $("item").style.display = "none";
    $("done").style.display = "block";
    return;
  }
  $("item").style.display = "";
  $("done").style.display = "none";
  $("item").dataset.id = item.id;
  best = null;
  ranks = item.candidates.map(() => null);
  thumbs = item.candidates.map(() => null);
  $("prompt").replaceChildren();
  for (const message of item.prompt) {
    const div = document.createElement("div");
    div.className = "prompt";
    const who = document.createElement("div");
    who.className = "who"; who.textContent = message.role;
    const body = document.createElement("div");
    body.textContent = message.content;
    div.append(who, body);
    $("prompt").append(div);
  }
  renderCandidates();
}

async function call(method, path, body) {
  const response = await fetch(path, {method, headers: {"Content-Type": "application/json", "X-Label-Token": TOKEN},
                                      body: body === undefined ? undefined : JSON.stringify(body)});
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    const err = new Error(data.error ? data.error.message : response.statusText);
    err.status = response.status;
    throw err;
  }
  return data;
}

async function loadNext() {
  const data = await call("GET", "/label/next");
  showProgress(data.progress);
  show(data.item);
}

async function send(body) {
  if (!item || busy) return;
  busy = true;
  refresh();
  try {
    const result = await call("POST", `/label/${encodeURIComponent(item.id)}`, body);
    setStatus(result.label === "skip" ? "skipped" : `saved: ${result.pairs} preference pair${result.pairs === 1 ? "" : "s"}`);
    await loadNext();
  } catch (err) {
    setStatus("error: " + err.message, true);
    if (err.status === 409) await loadNext().catch(() => {});   // labeled meanwhile (another tab): move on
  } finally {
    busy = false;
    refresh();
  }
}

document.querySelectorAll("input[name=mode]").forEach((radio) => radio.addEventListener("change", () => {
  if (item) renderCandidates();
}));
$("submit").addEventListener("click", () => { const l = label(); if (l) send(l); });
$("skip").addEventListener("click", () => send({kind: "skip"}));
document.addEventListener("keydown", (e) => {
  if (!item || ["SELECT", "TEXTAREA"].includes(e.target.tagName) || e.ctrlKey || e.metaKey || e.altKey) return;
  const digit = parseInt(e.key, 10);
  if (mode() === "best" && digit >= 1 && digit <= item.candidates.length) { pick(digit - 1); e.preventDefault(); }
  else if (e.key === "Enter" && label()) { e.preventDefault(); send(label()); }
  else if (e.key === "s" || e.key === "S") { e.preventDefault(); send({kind: "skip"}); }
});
loadNext().catch((err) => setStatus("cannot load items: " + err.message, true));
