// SharpTune runs dashboard: polls the JSON API every 2 s and draws line charts on <canvas>.
// The charts are our own ~100 lines rather than a vendored library: two line plots need no more, and the page stays
// a single self-contained asset set with no build step and nothing fetched from the network.
"use strict";

const POLL_MS = 2000;
const state = { runs: [], selected: null, records: [], lastStep: null, details: null, errors: [], charts: {},
  completions: null, completionsStep: null };
window.sharptuneDashboard = state;   // read by tests and handy in the browser console

const $ = id => document.getElementById(id);
const enc = encodeURIComponent;

async function getJson(url) {
  const response = await fetch(url, { cache: "no-store" });
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || `${url}: HTTP ${response.status}`);
  return body;
}

function format(value) {
  if (value === null || value === undefined) return "–";
  if (typeof value !== "number") return String(value);
  if (Number.isInteger(value)) return value.toLocaleString("en-US");
  const magnitude = Math.abs(value);
  return magnitude !== 0 && (magnitude < 1e-3 || magnitude >= 1e6)
    ? value.toExponential(2).replace(/\.?0+e/, "e")
    : String(parseFloat(value.toPrecision(4)));
}

// ---- charts -------------------------------------------------------------------------------------------------

function niceTicks(min, max, count) {
  if (min === max) { min -= 1; max += 1; }
  const rough = (max - min) / count;
  const power = Math.pow(10, Math.floor(Math.log10(rough)));
  const step = [1, 2, 2.5, 5, 10].map(m => m * power).find(s => s >= rough);
  const ticks = [];
  for (let t = Math.ceil(min / step) * step; t <= max + step * 1e-9; t += step) ticks.push(+t.toPrecision(12));
  return ticks;
}

/** Draws series [{name, color, points: [[x, y], ...]}] and records them on the canvas's data-points attribute. */
function drawChart(canvas, series) {
  canvas.dataset.points = JSON.stringify(Object.fromEntries(series.map(s => [s.name, s.points])));
  state.charts[canvas.id] = series;
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth || 640, height = canvas.clientHeight || 300;
  canvas.width = width * ratio; canvas.height = height * ratio;
  const g = canvas.getContext("2d");
  g.setTransform(ratio, 0, 0, ratio, 0, 0);
  g.clearRect(0, 0, width, height);
  g.font = "11px system-ui, sans-serif";
  const all = series.flatMap(s => s.points);
  if (all.length === 0) {
    g.fillStyle = "#656d76"; g.fillText("no data yet", width / 2 - 30, height / 2);
    return;
  }
  const xs = all.map(p => p[0]), ys = all.map(p => p[1]);
  let [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  if (x0 === x1) { x0 -= 1; x1 += 1; }
  const pad = (y1 - y0) * 0.05 || Math.abs(y0) * 0.05 || 1;
  y0 -= pad; y1 += pad;
  const left = 58, right = 12, top = 10, bottom = 26;
  const px = x => left + (x - x0) / (x1 - x0) * (width - left - right);
  const py = y => top + (1 - (y - y0) / (y1 - y0)) * (height - top - bottom);

  g.strokeStyle = "#eaeef2"; g.fillStyle = "#656d76"; g.lineWidth = 1;
  g.textAlign = "right"; g.textBaseline = "middle";
  for (const t of niceTicks(y0, y1, 5)) {
    if (t < y0 || t > y1) continue;
    g.beginPath(); g.moveTo(left, py(t)); g.lineTo(width - right, py(t)); g.stroke();
    g.fillText(format(t), left - 6, py(t));
  }
  g.textAlign = "center"; g.textBaseline = "top";
  for (const t of niceTicks(x0, x1, 6)) {
    if (t < x0 || t > x1) continue;
    g.beginPath(); g.moveTo(px(t), top); g.lineTo(px(t), height - bottom); g.stroke();
    g.fillText(format(t), px(t), height - bottom + 6);
  }
  g.strokeStyle = "#8c959f";
  g.strokeRect(left, top, width - left - right, height - top - bottom);

  for (const s of series) {
    g.strokeStyle = s.color; g.fillStyle = s.color; g.lineWidth = 1.8;
    g.beginPath();
    s.points.forEach(([x, y], i) => i === 0 ? g.moveTo(px(x), py(y)) : g.lineTo(px(x), py(y)));
    g.stroke();
    if (s.markers || s.points.length === 1)
      for (const [x, y] of s.points) { g.beginPath(); g.arc(px(x), py(y), 3, 0, 2 * Math.PI); g.fill(); }
  }
}

function seriesOf(key) {
  return state.records.filter(r => typeof r[key] === "number").map(r => [r.step, r[key]]);
}

function drawCharts() {
  const css = getComputedStyle(document.documentElement);
  drawChart($("loss-chart"), [
    { name: "loss", color: css.getPropertyValue("--train").trim(), points: seriesOf("loss") },
    { name: "val_loss", color: css.getPropertyValue("--val").trim(), points: seriesOf("val_loss"), markers: true },
  ]);
  drawChart($("lr-chart"), [{ name: "lr", color: css.getPropertyValue("--lr").trim(), points: seriesOf("lr") }]);
  // Reinforcement-learning runs (GRPO) log a reward per step: drawn only when the run has one.
  const rewards = seriesOf("reward");
  $("reward-figure").hidden = rewards.length === 0;
  if (rewards.length)
    drawChart($("reward-chart"), [
      { name: "reward", color: css.getPropertyValue("--train").trim(), points: rewards },
      { name: "val_reward", color: css.getPropertyValue("--val").trim(), points: seriesOf("val_reward"), markers: true },
    ]);
}

// ---- sampled completions (GRPO's completions.jsonl) -------------------------------------------------------------

function renderCompletions() {
  const page = state.completions;
  $("completions-section").hidden = !page || page.step === null;
  if (!page || page.step === null) return;
  const select = $("completions-step");
  select.replaceChildren(...page.steps.map(step => {
    const option = document.createElement("option");
    option.value = step; option.textContent = step; option.selected = step === page.step;
    return option;
  }));
  $("completions").tBodies[0].replaceChildren(...page.completions.map(c => {
    const row = document.createElement("tr");
    const perFunction = Object.entries(c.rewards ?? {}).map(([name, value]) => `${name} ${format(value)}`).join(", ");
    for (const value of [c.prompt, c.completion, format(c.reward), format(c.advantage), perFunction]) {
      const cell = row.insertCell(); cell.textContent = value;
    }
    if (c.truncated) row.classList.add("truncated");
    return row;
  }));
}

async function refreshCompletions(name) {
  // Follows the newest step unless the user picked an earlier one.
  const query = state.completionsStep === null ? "" : `?step=${state.completionsStep}`;
  const page = await getJson(`/api/runs/${enc(name)}/completions${query}`);
  if (name !== state.selected) return;
  state.completions = page;
  renderCompletions();
}

// ---- run list and details -----------------------------------------------------------------------------------

function renderRuns() {
  const list = $("runs");
  list.replaceChildren(...state.runs.map(run => {
    const item = document.createElement("li");
    item.dataset.run = run.name;
    item.classList.toggle("selected", run.name === state.selected);
    const name = document.createElement("span"); name.className = "name"; name.textContent = run.name;
    const meta = document.createElement("span"); meta.className = "meta";
    meta.textContent = "updated " + new Date(run.updatedAt).toLocaleString();
    item.append(name, meta);
    item.addEventListener("click", () => select(run.name));
    return item;
  }));
  $("no-runs").hidden = state.runs.length > 0;
}

function card(label, value) {
  const element = document.createElement("div"); element.className = "card";
  element.innerHTML = `<div class="label"></div><div class="value"></div>`;
  element.firstChild.textContent = label; element.lastChild.textContent = format(value);
  return element;
}

/** Flattens a report into rows "a.b.c → value" so any eval*.json shape reads as a table. */
function flatten(value, prefix, rows) {
  if (value !== null && typeof value === "object" && !(Array.isArray(value) && value.every(v => typeof v !== "object"))) {
    for (const [key, inner] of Object.entries(value)) flatten(inner, prefix ? `${prefix}.${key}` : key, rows);
  } else {
    rows.push([prefix, Array.isArray(value) ? value.map(format).join(", ") : format(value)]);
  }
  return rows;
}

function renderDetails() {
  const d = state.details;
  $("run").hidden = false;
  $("run-name").textContent = d.name;
  const s = d.summary;
  $("summary").replaceChildren(
    card("step", s.last_step), card("loss", s.loss), card("val loss", s.val_loss), card("best val loss", s.best_val_loss),
    card("best at step", s.best_val_step), card("learning rate", s.lr), card("tokens/s", s.tokens_per_second),
    card("token accuracy", s.token_accuracy), ...(s.reward === undefined ? [] : [card("reward", s.reward), card("val reward", s.val_reward)]));
  $("config").textContent = d.config ?? "(no config.yaml)";
  $("outputs").textContent = d.outputs.length ? "outputs: " + d.outputs.join(", ") : "";
  $("evals-section").hidden = d.evalReports.length === 0;
  $("evals").replaceChildren(...d.evalReports.map(report => {
    const table = document.createElement("table");
    table.dataset.file = report.file;
    const head = table.createTHead().insertRow();
    const th = document.createElement("th"); th.colSpan = 2; th.textContent = report.file; head.append(th);
    const rows = report.error ? [["error", report.error]] : flatten(report.report, "", []);
    for (const [key, value] of rows) {
      const row = table.insertRow();
      row.insertCell().textContent = key; row.insertCell().textContent = value;
    }
    return table;
  }));
}

function renderErrors() {
  $("errors").hidden = state.errors.length === 0;
  $("errors").textContent = state.errors.join("\n");
}

async function select(name) {
  state.selected = name; state.records = []; state.lastStep = null; state.details = null;
  state.completions = null; state.completionsStep = null;
  history.replaceState(null, "", "#run=" + enc(name));
  renderRuns();
  await refreshSelected();
}

async function refreshSelected() {
  const name = state.selected;
  if (!name) return;
  const details = await getJson(`/api/runs/${enc(name)}`);
  if (name !== state.selected) return;
  // A resumed run rewrites metrics.jsonl from its checkpoint step: start over when the file went backwards.
  if (state.lastStep !== null && (details.summary.last_step ?? -1) < state.lastStep) { state.records = []; state.lastStep = null; }
  state.details = details;
  renderDetails();
  const page = await getJson(`/api/runs/${enc(name)}/metrics` + (state.lastStep === null ? "" : `?after=${state.lastStep}`));
  if (name !== state.selected) return;
  // Two overlapping refreshes (a click during a poll) may both return the same records: keep each step once.
  const fresh = page.records.filter(r => state.lastStep === null || r.step > state.lastStep);
  state.records.push(...fresh);
  if (fresh.length) state.lastStep = fresh[fresh.length - 1].step;
  state.errors = page.errors;
  renderErrors();
  drawCharts();
  if (state.details.outputs.includes("completions.jsonl")) await refreshCompletions(name);
}

async function refresh() {
  state.runs = await getJson("/api/runs");
  const fromHash = new URLSearchParams(location.hash.slice(1)).get("run");
  if (!state.selected && state.runs.length) {
    await select(state.runs.some(r => r.name === fromHash) ? fromHash : state.runs[0].name);
    return;
  }
  renderRuns();
  await refreshSelected();
}

let busy = false;
async function tick() {
  if (busy) return;
  busy = true;
  try {
    await refresh();
    $("status").textContent = "updated " + new Date().toLocaleTimeString();
  } catch (error) {
    $("status").textContent = "error: " + error.message;
  } finally {
    busy = false;
  }
}

$("completions-step").addEventListener("change", event => {
  const steps = state.completions?.steps ?? [];
  const step = Number(event.target.value);
  state.completionsStep = step === steps[steps.length - 1] ? null : step;
  if (state.selected) refreshCompletions(state.selected);
});

tick();
setInterval(tick, POLL_MS);
window.addEventListener("resize", () => { if (state.details) drawCharts(); });
