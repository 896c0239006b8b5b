// pyraftkv dashboard: fetches /api/state every second and redraws; no library, no CDN.
"use strict";

const $ = (id) => document.getElementById(id);

function text(value, digits = 0) {
  if (value === null || value === undefined) return "—";
  return Number(value).toLocaleString("en", { maximumFractionDigits: digits });
}

function bytes(n) {
  if (n === null || n === undefined) return "—";
  const units = ["B", "kB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) { n /= 1000; i += 1; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

function cell(row, value, cls) {
  const td = row.insertCell();
  td.textContent = value;
  if (cls) td.className = cls;
  return td;
}

function drawMembers(state) {
  const body = $("members").tBodies[0];
  body.replaceChildren();
  for (const m of state.members) {
    const row = body.insertRow();
    row.className = m.role;
    row.dataset.endpoint = m.endpoint;
    row.dataset.role = m.role;
    if (m.name) row.dataset.name = m.name;
    cell(row, m.name || "?");
    cell(row, m.id || "");
    cell(row, m.endpoint);
    cell(row, m.role);
    if (m.role === "down") {
      const td = cell(row, m.error || "does not answer", "bad");
      td.colSpan = 6;
      continue;
    }
    cell(row, text(m.term));
    cell(row, text(m.raft_index));
    cell(row, text(m.applied_index));
    cell(row, `${bytes(m.db_size)} (${bytes(m.db_size_in_use)} in use)`);
    cell(row, m.healthy ? "healthy" : "unhealthy", m.healthy ? "" : "bad");
    cell(row, m.alarms.join(", ") || "none", m.alarms.length ? "bad" : "");
  }
  $("alarms").textContent = state.alarms.length
    ? "Alarms: " + state.alarms.map((a) => `${a.alarm} on ${a.member}`).join(", ")
    : "";
  $("alarms").className = state.alarms.length ? "bad" : "";
}

function drawBars(canvas, values, labels) {
  const ctx = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height, pad = 18;
  ctx.clearRect(0, 0, w, h);
  const top = Math.max(1, ...values.filter((v) => v !== null));
  const step = (w - 2 * pad) / Math.max(1, values.length);
  ctx.fillStyle = "#4a7bd0";
  values.forEach((v, i) => {
    if (v === null) return;
    const bh = (h - 2 * pad) * (v / top);
    ctx.fillRect(pad + i * step + 1, h - pad - bh, Math.max(1, step - 2), bh);
  });
  ctx.fillStyle = "#55606b";
  ctx.font = "10px system-ui";
  ctx.fillText(text(top), 2, 10);
  if (labels) {
    const every = Math.ceil(labels.length / 8);
    labels.forEach((label, i) => {
      if (i % every === 0) ctx.fillText(label, pad + i * step, h - 4);
    });
  }
}

function drawStages(stages) {
  const body = $("stages").tBodies[0];
  body.replaceChildren();
  const top = Math.max(0.001, ...stages.map((s) => s.p99_ms || 0));
  for (const s of stages) {
    const row = body.insertRow();
    row.dataset.stage = s.stage;
    cell(row, s.stage);
    cell(row, text(s.p50_ms, 3));
    cell(row, text(s.p99_ms, 3));
    const bar = document.createElement("span");
    bar.className = "bar";
    bar.style.width = `${Math.round(120 * (s.p50_ms || 0) / top)}px`;
    row.insertCell().appendChild(bar);
  }
}

function drawEvents(events) {
  const list = $("events");
  list.replaceChildren();
  for (const e of events) {
    const item = document.createElement("li");
    item.textContent = `${new Date(e.time * 1000).toLocaleTimeString()}  ${e.text}`;
    list.appendChild(item);
  }
}

function draw(state) {
  $("leader").textContent = state.leader || "none";
  $("leader").className = state.leader ? "" : "bad";
  $("updated").textContent = new Date(state.time * 1000).toLocaleTimeString();
  drawMembers(state);
  $("writes").textContent = text(state.writes_per_s);
  $("reads").textContent = text(state.reads_per_s);
  const l = state.latency_ms;
  $("latency").textContent = l.p50 === null ? "—" : `${text(l.p50, 2)} / ${text(l.p90, 2)} / ${text(l.p99, 2)} ms`;
  $("watchers").textContent = text(state.watchers);
  $("leases").textContent = text(state.leases);
  drawBars($("throughput"), state.throughput.map((p) => p.writes), null);
  drawBars($("fsync"), state.wal_fsync.map((b) => b.count),
    state.wal_fsync.map((b) => (b.le_ms === null ? "inf" : `${b.le_ms}`)));
  drawStages(state.stages);
  drawEvents(state.events);
  document.body.dataset.updated = String(state.time);
}

async function refresh() {
  try {
    const answer = await fetch("/api/state", { cache: "no-store" });
    if (answer.ok) draw(await answer.json());
  } catch (err) {
    $("updated").textContent = `dashboard server unreachable (${err})`;
  }
}

refresh();
setInterval(refresh, 1000);
