// The dashboard: renders the State that /api/state and /events carry.
// No framework and nothing fetched from elsewhere; the charts are SVG
// drawn here.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const $ = (id) => document.getElementById(id);

const int = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });
const one = new Intl.NumberFormat("en-US", { maximumFractionDigits: 1, minimumFractionDigits: 1 });

// compact: 1234567 -> "1.23 M".
function compact(n) {
  const a = Math.abs(n);
  if (a >= 1e9) return (n / 1e9).toFixed(2) + " G";
  if (a >= 1e6) return (n / 1e6).toFixed(2) + " M";
  if (a >= 1e4) return (n / 1e3).toFixed(1) + " k";
  return int.format(n);
}

function duration(s) {
  if (s < 60) return one.format(s) + " s";
  const m = Math.floor(s / 60);
  if (m < 60) return m + " min " + Math.floor(s % 60) + " s";
  return Math.floor(m / 60) + " h " + (m % 60) + " min";
}

function text(id, v) {
  const el = $(id);
  if (el.textContent !== String(v)) el.textContent = v;
}

function el(tag, cls, content) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (content !== undefined) e.textContent = content;
  return e;
}

function svgEl(tag, attrs) {
  const e = document.createElementNS(SVG, tag);
  for (const k in attrs) e.setAttribute(k, attrs[k]);
  return e;
}

// lineChart draws one series of history samples into an SVG whose viewBox
// is 600 wide: three grid lines, the filled line, and the scale.
function lineChart(svg, samples, key, color) {
  const vb = svg.viewBox.baseVal;
  const W = vb.width, H = vb.height, top = 14, bottom = H - 16;
  svg.replaceChildren();
  const max = Math.max(1, ...samples.map((s) => s[key]));
  const nice = niceCeil(max);
  for (let i = 0; i <= 2; i++) {
    const y = top + ((bottom - top) * i) / 2;
    svg.appendChild(svgEl("line", { x1: 0, x2: W, y1: y, y2: y, class: "grid-line" }));
  }
  const label = svgEl("text", { x: 4, y: 11 });
  label.textContent = compact(nice) + "/s";
  svg.appendChild(label);
  if (samples.length === 0) return;
  const t0 = samples[0].t, t1 = Math.max(samples[samples.length - 1].t, t0 + 1);
  const x = (t) => ((t - t0) / (t1 - t0)) * W;
  const y = (v) => bottom - (v / nice) * (bottom - top);
  let d = "";
  samples.forEach((s, i) => { d += (i ? "L" : "M") + x(s.t).toFixed(1) + " " + y(s[key]).toFixed(1); });
  const id = "g-" + svg.id;
  const defs = svgEl("defs", {});
  const grad = svgEl("linearGradient", { id: id, x1: 0, y1: 0, x2: 0, y2: 1 });
  grad.appendChild(svgEl("stop", { offset: "0%", "stop-color": color, "stop-opacity": 0.35 }));
  grad.appendChild(svgEl("stop", { offset: "100%", "stop-color": color, "stop-opacity": 0 }));
  defs.appendChild(grad);
  svg.appendChild(defs);
  if (samples.length > 1) {
    const area = d + "L" + x(samples[samples.length - 1].t).toFixed(1) + " " + bottom + "L" + x(t0).toFixed(1) + " " + bottom + "Z";
    svg.appendChild(svgEl("path", { d: area, fill: "url(#" + id + ")" }));
  }
  svg.appendChild(svgEl("path", { d: d, class: "line", stroke: color }));
  const span = svgEl("text", { x: W - 4, y: H - 3, "text-anchor": "end" });
  span.textContent = "last " + duration(t1 - t0);
  svg.appendChild(span);
}

function niceCeil(v) {
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

// faults draws one bar per kind, whatever kinds the simulator reports.
// The counts span orders of magnitude (every message is delayed a little,
// a disk is lost a few times a run), so the bars are on a log scale.
function faults(list) {
  const box = $("faults");
  const max = Math.max(1, ...list.map((f) => f.count));
  const scale = Math.log10(1 + max);
  const rows = list.map((f) => {
    const row = el("div", "fault");
    row.dataset.kind = f.kind;
    row.appendChild(el("span", "name", f.kind.replace(/_/g, " ")));
    const track = el("div", "track");
    const fill = el("div", "fill");
    fill.style.width = (f.count ? Math.max(1, (100 * Math.log10(1 + f.count)) / scale) : 0).toFixed(1) + "%";
    track.appendChild(fill);
    row.appendChild(track);
    row.appendChild(el("span", "count", compact(f.count)));
    return row;
  });
  box.replaceChildren(...rows);
}

function replicas(cur) {
  const body = $("replicas");
  const maxOp = Math.max(1, ...cur.replicas.map((r) => r.op));
  const rows = cur.replicas.map((r) => {
    const tr = el("tr");
    tr.dataset.replica = r.id;
    const leads = r.up && r.leader === r.id;
    const idCell = el("td", "", String(r.id));
    if (leads) idCell.appendChild(el("span", "leader-mark", " ★"));
    tr.appendChild(idCell);
    const st = el("td");
    st.appendChild(el("span", "status " + r.status, r.status.replace("_", " ")));
    tr.appendChild(st);
    for (const v of [r.view, r.op, r.commit]) tr.appendChild(el("td", "", r.up ? int.format(v) : "–"));
    tr.appendChild(el("td", "", r.up && r.leader ? String(r.leader) : "–"));
    const bar = el("div", "logbar");
    const held = el("div", "held");
    held.style.width = ((100 * r.op) / maxOp).toFixed(1) + "%";
    const committed = el("div", "committed");
    committed.style.width = ((100 * r.commit) / maxOp).toFixed(1) + "%";
    bar.append(held, committed);
    const cell = el("td");
    cell.appendChild(bar);
    tr.appendChild(cell);
    return tr;
  });
  body.replaceChildren(...rows);
}

let shownFailures = -1;

function failures(st) {
  const list = st.failures;
  const panel = $("failures-panel");
  panel.classList.toggle("has", st.seeds_failed > 0);
  $("no-failures").hidden = list.length > 0;
  if (list.length === shownFailures) return;
  shownFailures = list.length;
  const items = list.map((f) => {
    const li = el("li", "failure");
    li.dataset.seed = f.seed;
    li.appendChild(el("div", "", "seed " + f.seed));
    li.appendChild(el("div", "violation mono", f.violation));
    const replay = el("div", "replay");
    replay.appendChild(el("code", "", f.replay));
    const copy = el("button", "", "copy");
    copy.addEventListener("click", () => {
      navigator.clipboard?.writeText(f.replay).then(() => { copy.textContent = "copied"; });
    });
    replay.appendChild(copy);
    li.appendChild(replay);
    return li;
  });
  if (st.seeds_failed > list.length) {
    items.push(el("li", "dim", (st.seeds_failed - list.length) + " more failing seeds not listed"));
  }
  $("failures").replaceChildren(...items);
}

function render(st) {
  document.body.dataset.version = st.version;
  const last = st.first_seed + st.seeds_total - 1;
  text("run-config", "seeds " + st.first_seed + "–" + last + " · " + st.replicas + " replicas · " + st.ticks + " fault ticks per seed");
  const status = $("run-status");
  let label = "running", cls = "running";
  if (st.finished) { label = st.stopped ? "stopped" : "finished"; cls = st.stopped ? "stopped" : "finished"; }
  if (st.seeds_failed > 0) { label += " · failures"; cls = "failed"; }
  status.textContent = label;
  status.className = "pill " + cls;

  text("seeds-done", int.format(st.seeds_done));
  text("seeds-total", int.format(st.seeds_total));
  $("seeds-bar").style.width = ((100 * st.seeds_done) / st.seeds_total).toFixed(2) + "%";
  text("seeds-rate", one.format(st.seeds_per_second));
  text("elapsed", duration(st.elapsed_seconds));
  text("events-rate", compact(st.events_per_second));
  text("events-total", int.format(st.events));
  text("messages-total", int.format(st.messages));
  text("ops-checked", int.format(st.client_ops_checked));
  text("ops-completed", int.format(st.client_ops));
  text("failures-count", int.format(st.seeds_failed));
  $("failures-card").className = "card " + (st.seeds_failed > 0 ? "bad" : st.seeds_done > 0 ? "good" : "");
  text("failures-sub", st.seeds_failed > 0 ? "replay commands below" : "every invariant held");

  const cur = st.current;
  text("current-seed", cur.replicas ? cur.seed : "–");
  text("phase", cur.phase || "–");
  text("tick", int.format(cur.tick));
  text("ticks-bound", int.format(cur.ticks_bound));
  const tb = $("tick-bar");
  tb.style.width = (cur.ticks_bound ? (100 * cur.tick) / cur.ticks_bound : 0).toFixed(1) + "%";
  tb.className = cur.phase === "faults" ? "" : "liveness";
  if (cur.replicas) replicas(cur);

  faults(st.faults);
  lineChart($("chart-events"), st.history, "events_per_second", "#4fa3ff");
  lineChart($("chart-seeds"), st.history, "seeds_per_second", "#a78bfa");
  failures(st);
}

function setLink(live) {
  const l = $("link");
  l.textContent = live ? "● live" : "○ reconnecting";
  l.className = "link " + (live ? "live" : "dim");
}

function connect() {
  fetch("/api/state").then((r) => r.json()).then(render).catch(() => {});
  const es = new EventSource("/events");
  es.addEventListener("state", (e) => { setLink(true); render(JSON.parse(e.data)); });
  es.onopen = () => setLink(true);
  es.onerror = () => setLink(false);
}

connect();
