// Policy Mesh operator UI. Plain JavaScript, no dependencies, no network access
// beyond the gateway's own API, so it works offline. Every value from the API is
// inserted as text (never as HTML): rule ids, descriptions and error lines come
// from policy files an operator may not have written.
"use strict";

const REFRESH_MS = 2000;

const $ = (id) => document.getElementById(id);

/** Creates an element with text and attributes. */
function el(tag, text, attrs) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  return node;
}

/** Sets a node's text only when it changes, so aria-live regions stay quiet. */
function setText(node, text) {
  const value = String(text);
  if (node.textContent !== value) node.textContent = value;
}

/** A `<dl>` of label/value pairs; a value may be a node. */
function facts(pairs) {
  const dl = el("dl", null, { class: "facts" });
  for (const [label, value, id] of pairs) {
    dl.append(el("dt", label));
    const dd = el("dd", null, id ? { "data-field": id } : {});
    if (value instanceof Node) dd.append(value); else dd.textContent = value;
    dl.append(dd);
  }
  return dl;
}

function code(text) {
  return el("code", text);
}

/** Calls the API; resolves with the status, the parsed body (or null) and the round trip. */
async function api(method, path, body) {
  const started = performance.now();
  const init = { method, headers: { Accept: "application/json" } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  const text = await response.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch (_) { json = null; }
  return { status: response.status, body: json, text, ms: performance.now() - started };
}

/** The `{"error": {"type", "message"}}` body of an API error, as one line. */
function apiError(result) {
  const e = result.body && result.body.error;
  if (e && typeof e === "object") return `${result.status} ${e.type}: ${e.message}`;
  return `HTTP ${result.status}: ${result.text.slice(0, 300)}`;
}

function ruleName(rule) {
  return rule === null || rule === undefined ? "none (default decision)" : rule;
}

/** Whether a sensitive rule decided, in words. */
function sensitiveWord(sensitive) {
  return sensitive ? "yes: a sensitive rule decided, the request stays local" : "no";
}

function replace(container, ...nodes) {
  container.replaceChildren(...nodes);
}

// ---------------------------------------------------------------------------
// Chat

/** The messages of the chat form: the optional system prompt, then the user message. */
function chatMessages() {
  const messages = [];
  const system = $("chat-system").value;
  if (system.trim() !== "") messages.push({ role: "system", content: system });
  messages.push({ role: "user", content: $("chat-message").value });
  return messages;
}

function busy(button, on) {
  button.disabled = on;
  button.setAttribute("aria-busy", on ? "true" : "false");
}

async function sendChat(event) {
  event.preventDefault();
  const button = $("chat-send");
  const out = $("chat-result");
  const body = { messages: chatMessages() };
  const model = $("chat-model").value.trim();
  if (model !== "") body.model = model;
  busy(button, true);
  replace(out, el("p", "Sending…", { class: "empty" }));
  try {
    const r = await api("POST", "/v1/chat", body);
    const b = r.body;
    if (b && typeof b === "object" && "provider" in b) {
      const parts = [
        facts([
          ["Provider", b.provider, "provider"],
          ["Rule", ruleName(b.rule), "rule"],
          ["Sensitive", sensitiveWord(b.sensitive), "sensitive"],
          ["Detections", (b.detections || []).join(", ") || "none", "detections"],
          ["Reason codes", (b.reason_codes || []).join(", "), "reason"],
          ["Policy version", code(b.policy_version), "version"],
          ["Latency", `${Math.round(r.ms)} ms round trip (HTTP ${r.status})`, "latency"],
          ["Request id", code(b.request_id), "request-id"],
        ]),
      ];
      if (b.error) {
        parts.push(el("p", `Provider failed: ${b.error}`, { class: "error", id: "chat-error" }));
      } else {
        parts.push(el("h3", "Reply"), el("div", b.content, { class: "reply", id: "chat-reply" }));
      }
      replace(out, ...parts);
      if (b.request_id) loadAudit(b.request_id);
    } else {
      replace(out, el("p", apiError(r), { class: "error", id: "chat-error" }));
    }
  } catch (e) {
    replace(out, el("p", `The gateway did not answer: ${e.message}`, { class: "error", id: "chat-error" }));
  } finally {
    busy(button, false);
  }
}

// ---------------------------------------------------------------------------
// Audit

async function loadAudit(id) {
  const out = $("audit-result");
  replace(out, el("p", "Loading the audit event…", { class: "empty" }));
  try {
    const r = await api("GET", `/v1/audit/${encodeURIComponent(id)}`);
    if (r.status === 200 && r.body) {
      const a = r.body;
      replace(out, facts([
        ["Request id", code(a.request_id), "request-id"],
        ["Decision", code(a.decision), "decision"],
        ["Provider", a.provider, "provider"],
        ["Rule", ruleName(a.rule), "rule"],
        ["Sensitive", sensitiveWord(a.sensitive), "sensitive"],
        ["Detections", (a.detections || []).join(", ") || "none", "detections"],
        ["Reason codes", (a.reason_codes || []).join(", "), "reason"],
        ["Status", a.status, "status"],
        ["Failure", a.failure_category === null ? "none" : a.failure_category, "failure"],
        ["Provider latency", `${Number(a.latency_ms).toFixed(1)} ms`, "latency"],
        ["Model", a.model, "model"],
        ["Prompt length", `${a.prompt_length} characters`, "length"],
        ["Prompt hash", code(a.prompt_hash), "hash"],
        ["Policy version", code(a.policy_version), "version"],
        ["Created at", a.created_at, "created"],
      ]), el("p", "The audit store never holds the prompt or the reply: only this.", { class: "hint" }));
    } else if (r.status === 404) {
      replace(out, el("p", `No audit event for ${id}: audit is off (AUDIT_ENABLED=false), or the write failed.`, { class: "empty" }));
    } else {
      replace(out, el("p", apiError(r), { class: "error" }));
    }
  } catch (e) {
    replace(out, el("p", `The gateway did not answer: ${e.message}`, { class: "error" }));
  }
}

// ---------------------------------------------------------------------------
// Dry run

/** One line of the trace, in words. */
function traceLine(step, decision) {
  const li = el("li");
  li.append(el("strong", step.rule));
  if (step.held) {
    li.append(" — ", el("span", "held", { class: "held" }),
      `: route ${decision.route} → provider ${decision.provider}, reason ${(decision.reason_codes || []).join(", ")}`);
  } else {
    li.append(" — ", el("span", `did not hold: ${step.failed_condition} failed`, { class: "failed" }));
  }
  return li;
}

/** Dry-runs `messages` asking for `model` (none when empty), as a chat would be decided. */
async function runDecide(messages, model) {
  const out = $("decide-result");
  const body = { messages };
  if (model !== "") body.model = model;
  replace(out, el("p", "Deciding…", { class: "empty" }));
  try {
    const r = await api("POST", "/v1/decide", body);
    if (r.status !== 200 || !r.body) {
      replace(out, el("p", apiError(r), { class: "error", id: "decide-error" }));
      return;
    }
    const d = r.body;
    const list = el("ol", null, { class: "trace", id: "decide-trace" });
    for (const step of d.trace || []) list.append(traceLine(step, d));
    if (d.rule === null) {
      list.append(el("li", `no rule held — the default decides: route ${d.route} → provider ${d.provider}, reason default`, { class: "held" }));
    }
    replace(out,
      facts([
        ["Provider", d.provider, "provider"],
        ["Route", d.route, "route"],
        ["Rule", ruleName(d.rule), "rule"],
        ["Sensitive", sensitiveWord(d.sensitive), "sensitive"],
        ["Detections", (d.detections || []).join(", ") || "none", "detections"],
        ["Reason codes", (d.reason_codes || []).join(", "), "reason"],
        ["Policy version", code(d.policy_version), "version"],
      ]),
      el("h3", "Rules tried, in order"),
      list);
  } catch (e) {
    replace(out, el("p", `The gateway did not answer: ${e.message}`, { class: "error", id: "decide-error" }));
  }
}

function decideForm(event) {
  event.preventDefault();
  runDecide([{ role: "user", content: $("decide-message").value }], $("decide-model").value.trim());
}

function decideChat() {
  $("decide-message").value = $("chat-message").value;
  $("decide-model").value = $("chat-model").value;
  runDecide(chatMessages(), $("chat-model").value.trim());
  $("decide").scrollIntoView({ block: "nearest" });
}

// ---------------------------------------------------------------------------
// Live policy

let lastPolicy = "";

function bounds(b, unit) {
  if (!b) return null;
  const has = (x) => x !== null && x !== undefined;
  if (has(b.min) && has(b.max)) return `${unit} ${b.min}–${b.max}`;
  if (has(b.max)) return `${unit} ≤ ${b.max}`;
  if (has(b.min)) return `${unit} ≥ ${b.min}`;
  return null;
}

function plural(n, word, many) {
  return `${n} ${n === 1 ? word : many || `${word}s`}`;
}

/** A rule's conditions in words, as `/v1/routes` gives them: keyword and pattern counts, detectors, model globs. */
function conditions(c) {
  const parts = [];
  const scope = c.scope === "last_user" ? "last user message" : "all messages";
  if (c.keywords > 0) {
    const how = [c.keyword_match, c.keyword_normalization].filter(Boolean).join(", ");
    parts.push(`${plural(c.keywords, "keyword")} (${how}, ${scope})`);
  }
  if (c.patterns > 0) parts.push(`${plural(c.patterns, "pattern")} (${scope})`);
  if (Array.isArray(c.detect) && c.detect.length) parts.push(`detect ${c.detect.join(", ")} (${scope})`);
  const chars = bounds(c.input_chars, "input chars");
  if (chars) parts.push(chars);
  const usd = bounds(c.estimated_usd, "estimated USD");
  if (usd) parts.push(usd);
  if (Array.isArray(c.model) && c.model.length) parts.push(`model ${c.model.join(", ")}`);
  if (Array.isArray(c.client) && c.client.length) parts.push(`client ${c.client.join(", ")}`);
  return parts.length ? parts.join("; ") : "always holds";
}

function shortHash(hex) {
  return hex ? `${hex.slice(0, 12)}…` : "";
}

function when(iso) {
  if (!iso) return "never";
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : `${iso} (${d.toLocaleString()})`;
}

/** The reload error banner: one item per `path:line:column: message` line. */
function renderReloadError(p) {
  const banner = $("reload-error");
  const r = p.reload || {};
  if (r.status !== "error") {
    banner.hidden = true;
    return;
  }
  setText($("reload-error-version"), shortHash(p.version));
  setText($("reload-error-at"), when(r.last_attempt_at));
  const items = String(r.last_error || "unknown error").split("\n").filter((l) => l !== "").map((line) => {
    const li = el("li");
    const m = /^(.+?):(\d+):(\d+): (.*)$/.exec(line) || /^(.+?):(\d+): (.*)$/.exec(line);
    if (m && m.length === 5) {
      li.append(el("span", `${m[1]} line ${m[2]}, column ${m[3]}`, { class: "where mono" }), ": ", m[4]);
    } else if (m && m.length === 4) {
      li.append(el("span", `${m[1]} line ${m[2]}`, { class: "where mono" }), ": ", m[3]);
    } else {
      li.append(el("span", line, { class: "mono" }));
    }
    return li;
  });
  replace($("reload-error-lines"), ...items);
  banner.hidden = false;
}

function renderPolicy(p) {
  const r = p.reload || {};
  setText($("header-version"), shortHash(p.version));
  const badge = $("reload-badge");
  setText(badge, r.status === "error" ? "reload failed" : "ok");
  badge.className = `badge ${r.status === "error" ? "error" : "ok"}`;
  renderReloadError(p);

  // Rebuild the rest only when it changed, so focus and selection survive polling.
  const key = JSON.stringify([p.version, p.loaded_at, p.sources, p.rules, p.defaults, p.public_provider, p.providers, r.successes, r.failures]);
  if (key === lastPolicy) return;
  lastPolicy = key;

  setText($("policy-version"), p.version);
  setText($("policy-loaded-at"), when(p.loaded_at));
  setText($("policy-public"), p.public_provider);
  setText($("policy-reloads"), `${plural(r.successes || 0, "success", "successes")}, ${plural(r.failures || 0, "failure")} since start; last success ${when(r.last_success_at)}`);

  const d = p.defaults || {};
  const pricing = d.pricing || {};
  const rows = [
    ["provider", d.provider],
    ["pricing.input_usd_per_1m_tokens", pricing.input_usd_per_1m_tokens],
    ["pricing.chars_per_token", pricing.chars_per_token],
  ].map(([name, v]) => {
    const tr = el("tr");
    tr.append(el("td", null), el("td", v && v.value !== null ? v.value : "none"), el("td", v ? v.source : ""));
    tr.firstChild.append(code(name));
    return tr;
  });
  if ((d.fallback || []).length > 0) {
    const tr = el("tr");
    tr.append(el("td", null), el("td", d.fallback.join(", ")), el("td", "policy"));
    tr.firstChild.append(code("fallback"));
    rows.push(tr);
  }
  replace($("policy-defaults").tBodies[0], ...rows);

  const providers = (p.providers || []).map((provider) => {
    const tr = el("tr", null, { "data-provider": provider.id });
    const name = el("td");
    name.append(el("strong", provider.id));
    if (provider.builtin) name.append(" ", el("span", "built-in", { class: "hint" }));
    const trust = el("td", provider.trust);
    if (provider.trust === "local") trust.append(" ", el("span", "may serve sensitive requests", { class: "hint" }));
    const circuit = provider.circuit || {};
    const url = el("td");
    url.append(code(provider.url));
    tr.append(name, el("td", provider.api), trust, url, el("td", provider.model), el("td", provider.retries),
      el("td", `${circuit.state} (opens after ${circuit.failures}, ${circuit.cooldown_seconds} s)`));
    return tr;
  });
  replace($("policy-providers").tBodies[0], ...providers);

  const rules = (p.rules || []).map((rule, i) => {
    const tr = el("tr", null, { "data-rule": rule.id });
    const name = el("td");
    name.append(el("strong", rule.id));
    if (rule.sensitive) name.append(" ", el("span", "sensitive · tried first", { class: "badge" }));
    if (rule.description) name.append(el("br"), el("span", rule.description, { class: "hint" }));
    const where = el("td");
    where.append(code(`${rule.file}:${rule.line}`));
    const fallback = (rule.fallback || []).length > 0 ? ` then ${rule.fallback.join(", ")}` : "";
    tr.append(el("td", i + 1), name, el("td", `${rule.route} → ${rule.provider}${fallback}`), el("td", rule.reason),
      el("td", conditions(rule.conditions || {})), where);
    return tr;
  });
  if (rules.length === 0) {
    const tr = el("tr");
    tr.append(el("td", "No rules: every request takes the default.", { colspan: "6" }));
    rules.push(tr);
  }
  replace($("policy-rules").tBodies[0], ...rules);

  const sources = (p.sources || []).map((s) => {
    const li = el("li");
    li.append(code(s.path), " ", el("span", `sha256 ${shortHash(s.sha256)}`, { class: "hint", title: s.sha256 }));
    return li;
  });
  replace($("policy-sources"), ...sources);
}

let timer = null;

async function refreshPolicy() {
  const problem = $("policy-fetch-error");
  try {
    const r = await api("GET", "/v1/routes");
    if (r.status === 200 && r.body) {
      renderPolicy(r.body);
      problem.hidden = true;
      setText($("policy-refreshed"), `Last refreshed ${new Date().toLocaleTimeString()}.`);
    } else {
      setText(problem, `Could not read the policy: ${apiError(r)}`);
      problem.hidden = false;
    }
  } catch (e) {
    setText(problem, `Could not reach the gateway: ${e.message}`);
    problem.hidden = false;
  }
}

function schedule() {
  clearTimeout(timer);
  if (!$("policy-auto").checked) return;
  timer = setTimeout(async () => {
    // A hidden tab does not poll; it catches up when shown again.
    if (!document.hidden) await refreshPolicy();
    schedule();
  }, REFRESH_MS);
}

// ---------------------------------------------------------------------------
// Wiring

/** Enter submits the form; Shift+Enter (or an IME composition) keeps the newline. */
function enterSubmits(textarea) {
  textarea.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing && !event.altKey) {
      event.preventDefault();
      textarea.form.requestSubmit();
    }
  });
}

function init() {
  setText($("refresh-seconds"), REFRESH_MS / 1000);
  $("chat-form").addEventListener("submit", sendChat);
  $("decide-form").addEventListener("submit", decideForm);
  $("chat-decide").addEventListener("click", decideChat);
  $("policy-refresh").addEventListener("click", refreshPolicy);
  $("policy-auto").addEventListener("change", schedule);
  document.addEventListener("visibilitychange", () => { if (!document.hidden) refreshPolicy(); });
  enterSubmits($("chat-message"));
  enterSubmits($("decide-message"));
  refreshPolicy().then(schedule);
}

init();
