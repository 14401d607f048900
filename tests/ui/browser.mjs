// Drives the operator UI in a headless Chromium against a running gateway.
// Started by tests/gateway/ui.rs, which owns the gateway, the fake providers and the
// policy folder; this script only plays the operator. Its one argument is a
// JSON object:
//   base          the gateway's base URL
//   chromium      the Chromium executable
//   screenshots   the folder for one PNG per state
//   policyFile    the policy file to edit
//   chats         [{ message, provider, reply }]: chats to send, in order, and what each gets
//   marks         [{ rule, texts, absent }]: what a rule's row in the policy table must and must not say
//   decide        { message, rules }: a dry run and the rule ids its trace lists
//   edit          { text, ruleId }: a valid new policy and a rule it adds
//   broken        { text, line }: an invalid policy and the line its error names
// It exits 0 when every step holds, else 1 with the failed step on stderr.
import fs from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { chromium } from "playwright-core";

const config = JSON.parse(process.argv[2]);
const DEADLINE_MS = 20000;

function check(condition, message) {
  if (!condition) throw new Error(message);
}

async function routes() {
  const response = await fetch(`${config.base}/v1/routes`);
  check(response.ok, `GET /v1/routes answered ${response.status}`);
  return response.json();
}

/** Polls `probe` until it returns a truthy value; fails with `what` after the deadline. */
async function until(what, probe) {
  const start = Date.now();
  let last;
  for (;;) {
    last = await probe();
    if (last) return last;
    if (Date.now() - start > DEADLINE_MS) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

async function text(page, selector) {
  const node = await page.$(selector);
  return node ? (await node.textContent()).trim() : null;
}

async function shot(page, name) {
  await page.screenshot({ path: path.join(config.screenshots, `${name}.png`), fullPage: true });
}

/** The chat requests the gateway has counted, every provider and status together. */
async function chatsCounted() {
  const response = await fetch(`${config.base}/v1/metrics`);
  check(response.ok, `GET /v1/metrics answered ${response.status}`);
  return (await response.text()).split("\n")
    .filter((line) => line.startsWith("chat_requests_total{"))
    .reduce((sum, line) => sum + Number(line.split(" ").pop()), 0);
}

/**
 * A page of another origin that tries to chat through the gateway the three
 * ways a browser lets it: a form posted as text/plain, a "simple" no-cors
 * fetch, and a JSON fetch (which needs a CORS preflight the gateway never
 * grants).
 */
function attackerPage(gateway) {
  const field = '{"messages":[{"role":"user","content":"sent from elsewhere","pad":"';
  return `<!doctype html><meta charset="utf-8"><title>elsewhere</title>
<iframe name="sink"></iframe>
<form id="form" method="post" action="${gateway}/v1/chat" enctype="text/plain" target="sink">
<input type="hidden" name='${field}' value='"}]}'></form>
<script>
window.outcome = {};
(async () => {
  const body = JSON.stringify({ messages: [{ role: "user", content: "sent from elsewhere" }] });
  await fetch("${gateway}/v1/chat",
    { method: "POST", mode: "no-cors", headers: { "Content-Type": "text/plain" }, body });
  try {
    await fetch("${gateway}/v1/chat/completions",
      { method: "POST", headers: { "Content-Type": "application/json" }, body });
    window.outcome.json = "answered";
  } catch (e) {
    window.outcome.json = "refused";
  }
  document.getElementById("form").submit();
  window.outcome.done = true;
})();
</script>`;
}

/** Writes a file through a temporary file renamed over it, as editors do. */
function save(file, contents) {
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.tmp`);
  fs.writeFileSync(tmp, contents);
  fs.renameSync(tmp, file);
}

const profile = fs.mkdtempSync(path.join(os.tmpdir(), "policy-mesh-chromium-"));
const browser = await chromium.launchPersistentContext(profile, {
  executablePath: config.chromium,
  headless: true,
  viewport: { width: 1280, height: 900 },
  args: [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    // A name of someone else's that resolves to this machine, as DNS rebinding makes one.
    "--host-resolver-rules=MAP rebound.example 127.0.0.1",
  ],
});
let step = "start";
const pageErrors = [];
try {
  const page = browser.pages()[0] || (await browser.newPage());
  page.on("pageerror", (e) => pageErrors.push(e.message));

  step = "the page at / shows the live policy version";
  const initial = await routes();
  await page.goto(`${config.base}/`);
  await page.waitForFunction(
    (v) => document.getElementById("policy-version").textContent === v,
    initial.version, { timeout: DEADLINE_MS });
  const rows = await page.$$eval("#policy-rules tbody tr", (trs) => trs.map((tr) => tr.dataset.rule));
  check(JSON.stringify(rows) === JSON.stringify(initial.rules.map((r) => r.id)),
    `rules shown ${JSON.stringify(rows)}, /v1/routes has ${JSON.stringify(initial.rules.map((r) => r.id))}`);

  step = "the providers table lists every provider of /v1/routes";
  const providerRows = await page.$$eval("#policy-providers tbody tr", (trs) => trs.map((tr) => tr.dataset.provider));
  check(JSON.stringify(providerRows) === JSON.stringify(initial.providers.map((p) => p.id)),
    `providers shown ${JSON.stringify(providerRows)}, /v1/routes has ${JSON.stringify(initial.providers.map((p) => p.id))}`);
  const gpu = await text(page, `#policy-providers tr[data-provider="gpu-box"]`);
  for (const t of ["ollama", "local", "http://127.0.0.1:9", "llama3.1:70b", "closed"]) {
    check(gpu.includes(t), `the row of gpu-box lacks "${t}": ${gpu}`);
  }

  step = "each rule's row shows its sensitivity, normalization and detectors";
  for (const mark of config.marks) {
    const row = await text(page, `#policy-rules tr[data-rule="${mark.rule}"]`);
    for (const t of mark.texts) check(row.includes(t), `the row of ${mark.rule} lacks "${t}": ${row}`);
    for (const t of mark.absent || []) check(!row.includes(t), `the row of ${mark.rule} says "${t}": ${row}`);
  }

  step = "every control has a label and every result region is announced";
  const unlabelled = await page.$$eval("input, textarea, select",
    (nodes) => nodes.filter((n) => n.labels === null || n.labels.length === 0).map((n) => n.id || n.outerHTML));
  check(unlabelled.length === 0, `controls without a label: ${unlabelled.join(", ")}`);
  for (const id of ["chat-result", "decide-result", "audit-result"]) {
    const live = await page.getAttribute(`#${id}`, "aria-live");
    check(live === "polite", `#${id} has aria-live=${live}`);
  }
  check(await page.getAttribute("#reload-error", "role") === "alert", "the reload error is not an alert");
  // Tab reaches the message box from the system prompt: a keyboard user can get there.
  await page.focus("#chat-system");
  await page.keyboard.press("Tab");
  const focused = await page.evaluate(() => document.activeElement && document.activeElement.id);
  check(focused === "chat-message", `Tab from the system prompt went to ${focused}`);

  step = "/ui serves the same page";
  const ui = await fetch(`${config.base}/ui`);
  check(ui.ok && (await ui.text()).includes('id="chat-form"'), `GET /ui answered ${ui.status}`);

  // A marker on the window: it survives everything but a page load.
  await page.evaluate(() => { window.__sameDocument = true; });
  for (const [i, chat] of config.chats.entries()) {
    step = `chat ${i + 1}, sent with Enter, shows its provider, version and reply`;
    const before = await text(page, '#chat-result [data-field="request-id"]');
    await page.fill("#chat-message", "");
    await page.focus("#chat-message");
    await page.keyboard.type(chat.message);
    await page.keyboard.press("Enter");
    await page.waitForFunction(
      (previous) => {
        if (document.getElementById("chat-error")) return true;
        const id = document.querySelector('#chat-result [data-field="request-id"]');
        return id !== null && id.textContent !== previous && document.getElementById("chat-reply") !== null;
      },
      before, { timeout: DEADLINE_MS });
    const error = await text(page, "#chat-error");
    check(error === null, `the chat failed: ${error}`);
    const provider = await text(page, '#chat-result [data-field="provider"]');
    check(provider === chat.provider, `provider shown: ${provider}, expected ${chat.provider}`);
    const reply = await text(page, "#chat-reply");
    check(reply === chat.reply, `reply shown: ${reply}`);
    const version = await text(page, '#chat-result [data-field="version"]');
    check(version === initial.version, `policy version shown: ${version}`);
    const requestId = await text(page, '#chat-result [data-field="request-id"]');
    await shot(page, `1-chat-${i + 1}`);

    step = `the audit event of chat ${i + 1} shows`;
    await page.waitForFunction(
      (id) => {
        const node = document.querySelector('#audit-result [data-field="request-id"]');
        return node !== null && node.textContent === id;
      },
      requestId, { timeout: DEADLINE_MS });
    const audited = await text(page, '#audit-result [data-field="provider"]');
    check(audited === chat.provider, `audit provider: ${audited}`);
    await shot(page, `2-audit-${i + 1}`);
  }

  step = "a dry run lists the rules tried";
  await page.fill("#decide-message", config.decide.message);
  await page.press("#decide-message", "Enter");
  await page.waitForSelector("#decide-trace li", { timeout: DEADLINE_MS });
  const tried = await page.$$eval("#decide-trace li strong", (nodes) => nodes.map((n) => n.textContent));
  check(JSON.stringify(tried) === JSON.stringify(config.decide.rules),
    `trace lists ${JSON.stringify(tried)}, expected ${JSON.stringify(config.decide.rules)}`);
  await shot(page, "3-decide");

  step = "an edited policy file shows its new version without a page reload";
  save(config.policyFile, config.edit.text);
  const edited = await until("the gateway to serve the edit", async () => {
    const r = await routes();
    return r.version !== initial.version && r.reload.status === "ok" ? r : null;
  });
  await page.waitForFunction(
    (v) => document.getElementById("policy-version").textContent === v,
    edited.version, { timeout: DEADLINE_MS });
  await page.waitForSelector(`#policy-rules tr[data-rule="${config.edit.ruleId}"]`, { timeout: DEADLINE_MS });
  check(await page.evaluate(() => window.__sameDocument === true), "the page was reloaded");
  await shot(page, "4-reloaded");

  step = "a broken policy file shows its error with its file and line";
  save(config.policyFile, config.broken.text);
  await page.waitForSelector("#reload-error:not([hidden])", { timeout: DEADLINE_MS });
  const banner = await text(page, "#reload-error-lines");
  const name = path.basename(config.policyFile);
  check(banner.includes(name) && banner.includes(`line ${config.broken.line},`),
    `the error banner reads: ${banner}`);
  const badge = await text(page, "#reload-badge");
  check(badge === "reload failed", `the header badge reads: ${badge}`);
  const kept = await text(page, "#policy-version");
  check(kept === edited.version, `the version shown changed to ${kept} though the last good policy serves`);
  check(await page.evaluate(() => window.__sameDocument === true), "the page was reloaded");
  await shot(page, "5-broken");

  step = "the page fits a phone-sized screen";
  await page.setViewportSize({ width: 375, height: 812 });
  const width = await page.evaluate(() => document.documentElement.scrollWidth);
  check(width <= 375, `the page is ${width}px wide on a 375px screen`);
  await shot(page, "6-phone");

  step = "the API docs render under their Content-Security-Policy";
  const docs = await browser.newPage();
  const refused = [];
  docs.on("console", (m) => { if (m.text().includes("Content Security Policy")) refused.push(m.text()); });
  docs.on("pageerror", (e) => pageErrors.push(`docs: ${e.message}`));
  const docsResponse = await docs.goto(`${config.base}/docs/`);
  const csp = docsResponse.headers()["content-security-policy"] || "";
  check(csp.includes("default-src 'self'"), `/docs/ has the policy "${csp}"`);
  await docs.waitForFunction(
    () => { const t = document.querySelector(".swagger-ui .info .title"); return t && t.textContent.includes("Policy Mesh"); },
    null, { timeout: DEADLINE_MS });
  await docs.waitForSelector(".swagger-ui .opblock", { timeout: DEADLINE_MS });
  check(refused.length === 0, `the docs broke their policy: ${refused.join("; ")}`);
  await shot(docs, "7-docs");
  await docs.close();

  step = "a page on another origin cannot make the browser chat through the gateway";
  const attacker = http.createServer((_, res) => {
    res.writeHead(200, { "Content-Type": "text/html; charset=utf-8" });
    res.end(attackerPage(config.base));
  });
  await new Promise((resolve) => attacker.listen(0, "127.0.0.1", resolve));
  try {
    const counted = await chatsCounted();
    const evil = await browser.newPage();
    const answers = [];
    evil.on("response", (r) => {
      if (r.url().startsWith(config.base)) answers.push(`${r.request().method()} ${r.status()}`);
    });
    await evil.goto(`http://127.0.0.1:${attacker.address().port}/`);
    await evil.waitForFunction(() => window.outcome.done === true, null, { timeout: DEADLINE_MS });
    const outcome = await evil.evaluate(() => window.outcome);
    check(outcome.json === "refused", `a cross-origin JSON chat was ${outcome.json}`);
    // The form's answer lands in the frame: the gateway refused it unread.
    const refusal = await until("the form's answer", async () => {
      const frame = evil.frames().find((f) => f.url().startsWith(config.base));
      const html = frame ? await frame.content() : "";
      return html.includes("unsupported_media_type") ? html : null;
    });
    check(refusal.includes("application/json"), `the form's answer: ${refusal}`);
    await until("both refusals", async () => answers.filter((a) => a === "POST 415").length >= 2);
    check(!answers.some((a) => a.startsWith("POST 2")), `a cross-origin chat was answered: ${answers}`);
    check((await chatsCounted()) === counted, "a cross-origin request was counted as a chat");

    step = "a rebound name cannot read the gateway's answers";
    const port = new URL(config.base).port;
    const rebound = await evil.goto(`http://rebound.example:${port}/v1/routes`);
    check(rebound.status() === 421, `GET /v1/routes by a rebound name answered ${rebound.status()}`);
    const body = await rebound.text();
    check(body.includes("misdirected_request") && !body.includes("version"), `it read: ${body}`);
    await evil.close();
  } finally {
    attacker.close();
  }

  step = "no script error";
  check(pageErrors.length === 0, `script errors: ${pageErrors.join("; ")}`);
  console.log(`ui: every step held; screenshots in ${config.screenshots}`);
} catch (e) {
  console.error(`ui: step failed: ${step}: ${e.message}`);
  process.exitCode = 1;
} finally {
  await browser.close();
  fs.rmSync(profile, { recursive: true, force: true });
}
