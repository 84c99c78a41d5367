// The page of `trm serve`: plain DOM and SVG, no library, no build step. It posts a solve to
// /api/solve/stream and redraws after every JSON line (one per supervision step; see trm/serve/stream.py).
"use strict";

const $ = (id) => document.getElementById(id);
const BOX = { 4: [2, 2], 6: [2, 3], 9: [3, 3] };
const MAZE_CLASS = { "#": "t-wall", " ": "t-open", S: "t-S", G: "t-G", o: "t-path" };
const SVG = "http://www.w3.org/2000/svg";

let models = [];
let run = null;      // the solve on screen: {task, size, puzzle, truth, D, rollouts: Map k -> {...}, ...}
let abort = null;    // AbortController of the stream in flight (a new solve or a closed page ends it)
let arcExpected = null;  // ARC: the test outputs of the task sent, where it has them

function model() { return models.find((m) => m.name === $("model").value); }
function color(k, n) { return n <= 1 ? "#2563eb" : `hsl(${Math.round((360 * k) / n)}, 65%, 45%)`; }
function flat(text) { return text.replace(/\n/g, ""); }

function setStatus(state, text) { const s = $("status"); s.dataset.state = state; s.textContent = text; }
function showError(msg) { $("error").textContent = msg || ""; }

// --- grids ---------------------------------------------------------------------------------------------
function drawGrid(el, task, size, text, opts = {}) {
  const cells = flat(text);
  const given = opts.puzzle ? flat(opts.puzzle) : "";
  const changed = new Set(opts.changed || []), wrong = new Set(opts.wrong || []);
  el.className = "grid" + (task === "maze" ? " maze" : "") + (opts.small ? " small" : "");
  el.style.gridTemplateColumns = `repeat(${size}, auto)`;
  el.dataset.solution = cells;
  el.replaceChildren();
  const [br, bc] = BOX[size] || [size, size];
  for (let i = 0; i < size * size; i++) {
    const d = document.createElement("div");
    const ch = cells[i] || "";
    d.className = "cell";
    d.dataset.i = i;
    if (task === "maze") {
      d.classList.add(MAZE_CLASS[ch] || "t-open");
    } else {
      d.textContent = ch === "0" || ch === "." ? "" : ch;
      const r = Math.floor(i / size), c = i % size;
      if ((c + 1) % bc === 0 && c < size - 1) d.classList.add("box-r");
      if ((r + 1) % br === 0 && r < size - 1) d.classList.add("box-b");
      if (given && given[i] !== "." && given[i] !== "0") d.classList.add("given");
    }
    if (changed.has(i)) d.classList.add("changed");
    if (wrong.has(i)) d.classList.add("wrong");
    el.appendChild(d);
  }
}

// --- ARC: colour grids, the test inputs and the two attempts with their votes ------------------------------
const ARC_COLOURS = ["#000000", "#0074d9", "#ff4136", "#2ecc40", "#ffdc00", "#aaaaaa", "#f012be", "#ff851b",
                     "#7fdbff", "#870c25"];

function arcGrid(rows) {
  const g = document.createElement("div");
  g.className = "arc-grid";
  g.style.gridTemplateColumns = `repeat(${rows[0] ? rows[0].length : 1}, auto)`;
  for (const row of rows) for (const v of row) {
    const c = document.createElement("div");
    c.style.background = ARC_COLOURS[v] || "#fff";
    c.dataset.v = v;
    g.append(c);
  }
  return g;
}

function arcFigure(rows, caption) {
  const f = document.createElement("figure");
  const cap = document.createElement("figcaption");
  cap.textContent = caption;
  f.append(arcGrid(rows), cap);
  return f;
}

function drawArc(inputs, result) {
  $("arc-panel").hidden = false;
  const box = $("arc-pairs");
  box.replaceChildren();
  inputs.forEach((x, p) => {
    const row = document.createElement("div");
    row.className = "arc-pair";
    row.dataset.pair = p;
    row.append(arcFigure(x, `test pair ${p + 1}: input`));
    const expected = run.expected && run.expected[p];
    if (expected) row.append(arcFigure(expected, "the task's output"));
    const rec = result && result.pairs[p];
    if (rec) {
      rec.attempts.forEach((a, i) => row.append(arcFigure(a, `attempt_${i + 1}: ${rec.votes[i]} votes, ` +
        `confidence ${rec.confidence[i].toFixed(3)}`)));
      if (!rec.attempts.length) row.append(document.createTextNode("no version produced a grid"));
      if ("correct" in rec) {
        const v = document.createElement("div");
        v.className = rec.correct ? "ok" : "bad";
        v.textContent = rec.correct ? "solved (an attempt equals the task's output)" : "not solved";
        row.append(v);
      }
    }
    box.append(row);
  });
  if (result) {
    $("arc-note").textContent = `task ${result.task}: ${result.versions} versions voted` +
      (result.trained_versions ? " (its versions in the model's dataset)" : " (a task new to the model: blank puzzle embedding)");
    box.dataset.final = "1";
  }
}

// --- charts --------------------------------------------------------------------------------------------
function svgEl(name, attrs, text) {
  const e = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

function drawQ(svg, rollouts, D, main) {
  svg.replaceChildren();
  const W = 360, H = 200, L = 36, R = 10, T = 10, B = 24;
  const all = [...rollouts.values()].flatMap((r) => r.q.map((p) => p[1]));
  if (!all.length) return;
  let lo = Math.min(0, ...all), hi = Math.max(0, ...all);
  if (hi - lo < 1e-6) { hi += 1; lo -= 1; }
  const x = (t) => L + ((t - 1) / Math.max(D - 1, 1)) * (W - L - R);
  const y = (q) => T + ((hi - q) / (hi - lo)) * (H - T - B);
  svg.append(svgEl("line", { x1: L, x2: W - R, y1: y(0), y2: y(0), stroke: "#9ca3af", "stroke-dasharray": "3 3" }));
  svg.append(svgEl("text", { x: 2, y: y(0) + 4, "font-size": 10, fill: "#6b7280" }, "0"));
  if (y(0) - T > 12) svg.append(svgEl("text", { x: 2, y: T + 8, "font-size": 10, fill: "#6b7280" }, hi.toFixed(1)));
  if (H - B - y(0) > 12) svg.append(svgEl("text", { x: 2, y: H - B, "font-size": 10, fill: "#6b7280" }, lo.toFixed(1)));
  svg.append(svgEl("text", { x: W / 2, y: H - 6, "font-size": 10, fill: "#6b7280", "text-anchor": "middle" },
                   `supervision step (1..${D})`));
  const n = rollouts.size;
  for (const [k, r] of rollouts) {
    const pts = r.q.map(([t, q]) => `${x(t).toFixed(1)},${y(q).toFixed(1)}`).join(" ");
    svg.append(svgEl("polyline", { points: pts, fill: "none", stroke: color(k, n),
                                   "stroke-width": k === main ? 2.5 : 1, opacity: k === main ? 1 : 0.6 }));
  }
  const m = rollouts.get(main);
  if (m && m.halt_step) {
    const hx = x(m.halt_step);
    svg.append(svgEl("line", { x1: hx, x2: hx, y1: T, y2: H - B, stroke: "#15803d", "stroke-dasharray": "4 2" }));
    svg.append(svgEl("text", { x: Math.min(hx + 3, W - 90), y: T + 10, "font-size": 10, fill: "#15803d",
                               id: "halt-label" }, `Q halts at step ${m.halt_step}`));
  }
}

function drawPCA(svg, pca, main) {
  svg.replaceChildren();
  const W = 360, H = 260, P = 18;
  const paths = Object.entries(pca.paths).map(([k, pts]) => [Number(k), pts]);
  const xs = paths.flatMap(([, p]) => p.map((v) => v[0])), ys = paths.flatMap(([, p]) => p.map((v) => v[1]));
  if (!xs.length) return;
  const [x0, x1] = [Math.min(...xs), Math.max(...xs)], [y0, y1] = [Math.min(...ys), Math.max(...ys)];
  const sx = (v) => P + ((v - x0) / (x1 - x0 || 1)) * (W - 2 * P);
  const sy = (v) => H - P - ((v - y0) / (y1 - y0 || 1)) * (H - 2 * P);
  const n = paths.length;
  for (const [k, pts] of paths) {
    const c = color(k, n);
    svg.append(svgEl("polyline", { points: pts.map((p) => `${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`).join(" "),
                                   fill: "none", stroke: c, "stroke-width": k === main ? 2 : 1, opacity: 0.8 }));
    const labelled = [];  // step numbers (one rollout), skipped where they would overlap one already drawn
    pts.forEach((p, i) => {
      const last = i === pts.length - 1, px = sx(p[0]), py = sy(p[1]);
      svg.append(svgEl("circle", { cx: px, cy: py, r: last ? 4 : 2, fill: last ? c : "#fff", stroke: c }));
      if (n === 1 && labelled.every(([lx, ly]) => Math.hypot(px - lx, py - ly) > 14)) {
        svg.append(svgEl("text", { x: px + 5, y: py - 4, "font-size": 9, fill: "#6b7280" }, i + 1));
        labelled.push([px, py]);
      }
    });
  }
  const e = pca.explained || [0, 0];
  $("pca-note").textContent = `(PCA of the answer state y, PC1 ${(100 * e[0]).toFixed(0)}%, PC2 ${(100 * e[1]).toFixed(0)}% of the variance so far)`;
}

// --- the rollouts panel (K > 1) --------------------------------------------------------------------------
function drawRollouts() {
  const box = $("rollouts");
  box.replaceChildren();
  const n = run.rollouts.size;
  $("rollouts-panel").hidden = n <= 1;
  for (const [k, r] of run.rollouts) {
    const div = document.createElement("div");
    div.className = "rollout" + (r.valid ? " valid" : "") + (run.selected === k ? " selected" : "") +
      (run.firstValid === k ? " first-valid" : "");
    div.dataset.k = k;
    const g = document.createElement("div");
    drawGrid(g, run.task, run.size, r.grid, { puzzle: run.puzzle, changed: r.changed, wrong: r.wrong, small: true });
    const cap = document.createElement("div");
    cap.className = "caption";
    cap.style.color = color(k, n);
    const q = r.q.length ? r.q[r.q.length - 1][1] : NaN;
    cap.textContent = `#${k} q ${q.toFixed(2)}` + (run.selected === k ? " (selected)" : "");
    div.append(g, cap);
    box.append(div);
  }
}

function mainRollout() {  // K = 1: the one; K > 1: the highest q_halt so far (what best-q would pick now)
  let best = null, bq = -Infinity;
  for (const [k, r] of run.rollouts) {
    const q = r.q.length ? r.q[r.q.length - 1][1] : -Infinity;
    if (q > bq) { bq = q; best = k; }
  }
  return best;
}

// --- events --------------------------------------------------------------------------------------------
function onEvent(ev) {
  if (ev.event === "start" && ev.task === "arc") {
    run = { task: "arc", inputs: ev.test_inputs, expected: arcExpected };
    drawArc(run.inputs, null);
    setStatus("running", `voting over the versions of ${ev.test_inputs.length} test pair(s)`);
  } else if (ev.event === "final" && run && run.task === "arc") {
    drawArc(run.inputs, ev.result);
    setStatus("done", "done");
  } else if (ev.event === "start") {
    run = { task: ev.task, size: ev.size, puzzle: ev.puzzle, truth: ev.truth, D: 1, rollouts: new Map(),
            selected: null, firstValid: null, batch: 0 };
    drawGrid($("grid"), run.task, run.size, run.puzzle, { puzzle: run.puzzle });
  } else if (ev.event === "batch") {
    run.rollouts = new Map();
    run.D = ev.D;
    run.batch = ev.batch;
    run.K = ev.K;
    $("rollouts-note").textContent = ev.sigma > 0
      ? `batch ${ev.batch}: ${ev.K} rollouts, noise on ${ev.noise}, sigma ${ev.sigma}` : `batch ${ev.batch}: the deterministic rollout`;
  } else if (ev.event === "step") {
    for (const r of ev.rollouts) {
      const prev = run.rollouts.get(r.k) || { q: [] };
      run.rollouts.set(r.k, { ...r, q: [...prev.q, [ev.step, r.q_halt]] });
    }
    const k = mainRollout(), m = run.rollouts.get(k);
    drawGrid($("grid"), run.task, run.size, m.grid, { puzzle: run.puzzle, changed: m.changed, wrong: m.wrong });
    $("step-label").textContent = `step ${ev.step} of ${run.D}` + (run.rollouts.size > 1 ? `, rollout #${k} (highest q_halt)` : "") +
      (ev.batch > 0 ? `, batch ${ev.batch}` : "");
    $("step-label").dataset.step = ev.step;
    drawQ($("qchart"), run.rollouts, run.D, k);
    drawPCA($("pca"), ev.pca, k);
    if (run.rollouts.size > 1) drawRollouts(); else $("rollouts-panel").hidden = true;
    setStatus("running", `step ${ev.step}`);
  } else if (ev.event === "final") {
    const r = ev.result;
    run.result = r;
    for (const [k, ro] of run.rollouts) if (flat(ro.grid) === flat(r.solution) && run.selected === null) run.selected = k;
    if (r.verify && r.verify.found) run.firstValid = run.selected;
    const wrong = run.truth ? [...flat(r.solution)].flatMap((c, i) => (c !== flat(run.truth)[i] ? [i] : [])) : [];
    drawGrid($("grid"), run.task, run.size, r.solution, { puzzle: run.puzzle, wrong });
    $("grid").dataset.final = "1";
    if (run.rollouts.size > 1) {
      drawRollouts();
      if (run.selected !== null) drawQ($("qchart"), run.rollouts, run.D, run.selected);
    }
    const how = r.verify ? (r.verify.found ? "the first valid answer" : "none valid: the selected answer")
      : r.K ? `${r.select} of ${r.K} rollouts` : "final";
    $("step-label").textContent = `${how}` + (run.selected !== null && run.rollouts.size > 1 ? ` (#${run.selected})` : "") +
      `, ${r.steps} steps`;
    const v = $("verdict");
    v.className = r.valid ? "ok" : "bad";
    let text = r.valid ? "a valid solution" : "not valid";
    if (r.obeys_rules === false) text += ": breaks the rules";
    text += ` · ${r.steps} steps · q_halt ${r.q_halt.toFixed(2)} (confidence ${r.confidence.toFixed(3)})`;
    if (r.K) text += ` · ${r.select} of ${r.K}: ${r.rollouts_agreeing} agree, ${r.distinct_answers} distinct`;
    if (r.verify) text += r.verify.found
      ? ` · verified: rollout ${r.verify.first_valid_rollout} of ${r.verify.rollouts} (${r.verify.network_calls} network calls)`
      : ` · none valid within ${r.verify.rollouts} rollouts (${r.verify.network_calls} network calls)`;
    if (r.cells_decoded) text += ` · ${r.cells_decoded} cells differ from the raw argmax`;
    v.textContent = text;
    setStatus("done", `done in ${(1000 * r.seconds).toFixed(0)} ms`);
  } else if (ev.event === "error") {
    showError(ev.error);
    setStatus("error", "error");
  }
}

async function solve() {
  if (abort) abort.abort();  // the previous stream's connection closes: the server stops that computation
  abort = new AbortController();
  showError("");
  $("verdict").textContent = "";
  $("step-label").textContent = "";
  $("qchart").replaceChildren();
  $("pca").replaceChildren();
  $("rollouts-panel").hidden = true;
  $("arc-panel").hidden = true;
  delete $("arc-pairs").dataset.final;
  setStatus("running", "starting");
  const num = (id) => ($(id).value === "" ? null : Number($(id).value));
  let body;
  if (model() && model().task === "arc") {
    let task;
    try { task = JSON.parse($("puzzle").value); } catch (e) {
      showError(`the task is not JSON (${e.message})`); setStatus("error", "error"); return;
    }
    arcExpected = Array.isArray(task.test) ? task.test.map((t) => (t && Array.isArray(t.output) ? t.output : null)) : null;
    body = { model: $("model").value, task, augments: num("augments") || 8 };
    if (num("arc-D") !== null) body.D = num("arc-D");
    return stream(body);
  }
  body = { model: $("model").value, puzzle: $("puzzle").value, decode: $("decode").value,
           halt: $("halt").checked };
  if (num("D") !== null) body.D = num("D");
  const K = num("K") || 1;
  if (K > 1 || $("verify").checked) { body.K = K > 1 ? K : 8; body.sigma = num("sigma") ?? 0.3; }
  if ($("verify").checked) { body.verify = true; body.budget = num("budget") || 64; }
  return stream(body);
}

async function stream(body) {
  let res;
  try {
    res = await fetch("/api/solve/stream", { method: "POST", headers: { "Content-Type": "application/json" },
                                             body: JSON.stringify(body), signal: abort.signal });
  } catch (e) { showError(`no answer from the server (${e.message})`); setStatus("error", "error"); return; }
  if (!res.ok) {
    let msg = `HTTP ${res.status}`;
    try { msg = (await res.json()).error || msg; } catch (e) { /* not JSON */ }
    showError(msg);
    setStatus("error", "error");
    return;
  }
  const reader = res.body.getReader(), dec = new TextDecoder();
  let buf = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += dec.decode(value, { stream: true });
      let nl;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (line.trim()) onEvent(JSON.parse(line));
      }
    }
  } catch (e) {
    if (e.name !== "AbortError") { showError(`the stream broke off (${e.message})`); setStatus("error", "error"); }
  }
}

async function samplePuzzle() {
  showError("");
  const res = await fetch(`/api/puzzle?model=${encodeURIComponent($("model").value)}&index=${$("index").value || 0}`);
  const j = await res.json();
  if (!res.ok) { showError(j.error); return; }
  $("puzzle").value = j.puzzle;
}

function showModel() {
  const m = model();
  if (!m) return;
  $("model-info").textContent = `${m.task} ${m.size}x${m.size}, ${m.recursion}/${m.mixer} d=${m.d}, N_sup ${m.N_sup}` +
    (m.step != null ? `, step ${m.step}` : "") + (m.task === "arc" ? "; load a task JSON"
      : m.test_puzzles ? `; ${m.test_puzzles} test puzzles` : "; no dataset here");
  $("sample").disabled = !m.test_puzzles;
  $("index").max = m.test_puzzles ? m.test_puzzles - 1 : 0;
  $("D").placeholder = `${m.N_sup}`;
  const isArc = m.task === "arc";
  $("arc-controls").hidden = !isArc;
  $("grid-controls").hidden = isArc;
  $("sample-row").hidden = isArc;
  for (const p of document.querySelectorAll(".grid-panel")) p.hidden = isArc;
  $("arc-panel").hidden = true;
  $("puzzle").placeholder = isArc ? "an ARC task as JSON: {\"train\": [...], \"test\": [...]} (or load a file above)"
    : "Sudoku: 81 (36, 16) characters, '.' or '0' for a blank; or a grid over several lines";
  $("arc-D").placeholder = `${m.N_sup}`;
  const prop = $("decode").querySelector("option[value=propagate]");
  prop.disabled = m.task !== "sudoku";
  if (prop.disabled && $("decode").value === "propagate") $("decode").value = "constrained";
}

async function init() {
  const res = await fetch("/api/models");
  models = (await res.json()).models.filter((m) => m.served);
  $("model").replaceChildren(...models.map((m) => new Option(`${m.name} (${m.task} ${m.size}x${m.size})`, m.name)));
  if (!models.length) showError("no Sudoku, maze or ARC checkpoint to serve");
  showModel();
  $("model").addEventListener("change", showModel);
  $("solve").addEventListener("click", solve);
  $("sample").addEventListener("click", samplePuzzle);
  $("task-file").addEventListener("change", async (e) => {
    const f = e.target.files[0];
    if (f) $("puzzle").value = await f.text();
  });
  window.addEventListener("pagehide", () => abort && abort.abort());
  setStatus("idle", "");
}

init();
