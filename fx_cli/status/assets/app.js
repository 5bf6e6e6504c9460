// fx status page: fetches the read-only API, draws small canvas charts, follows /events (no external code).
"use strict";
const token = new URLSearchParams(location.search).get("token");
const withToken = (path) => token ? `${path}?token=${encodeURIComponent(token)}` : path;
const COLORS = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2"];

async function getJSON(path) {
  const res = await fetch(withToken(path), { cache: "no-store" });
  if (!res.ok) throw new Error(`${path}: ${res.status}`);
  return res.json();
}

// series: {label: [[x, y], ...]}; the data is kept on the canvas (data-series) for people and tests to read.
function drawChart(canvas, series) {
  canvas.dataset.series = JSON.stringify(series);
  const ctx = canvas.getContext("2d");
  const W = canvas.width, H = canvas.height, L = 48, R = 10, T = 10, B = 28;
  ctx.clearRect(0, 0, W, H);
  const points = Object.values(series).flat();
  ctx.font = "11px system-ui, sans-serif";
  ctx.fillStyle = "#6b7280";
  if (!points.length) { ctx.fillText("no completed round yet", L, H / 2); return; }
  let [x0, x1] = [Math.min(...points.map(p => p[0])), Math.max(...points.map(p => p[0]))];
  let [y0, y1] = [Math.min(...points.map(p => p[1])), Math.max(...points.map(p => p[1]))];
  if (x0 === x1) { x0 -= 1; x1 += 1; }
  if (y0 === y1) { const d = Math.abs(y0) * 0.1 || 1; y0 -= d; y1 += d; }
  const sx = x => L + (x - x0) / (x1 - x0) * (W - L - R);
  const sy = y => H - B - (y - y0) / (y1 - y0) * (H - T - B);
  ctx.strokeStyle = "#d8dce3";
  ctx.beginPath(); ctx.moveTo(L, T); ctx.lineTo(L, H - B); ctx.lineTo(W - R, H - B); ctx.stroke();
  for (let i = 0; i <= 4; i++) {
    const y = y0 + (y1 - y0) * i / 4;
    ctx.fillText(Number(y.toPrecision(3)).toString(), 2, sy(y) + 4);
  }
  for (let x = Math.ceil(x0); x <= x1; x += Math.max(1, Math.ceil((x1 - x0) / 10))) {
    ctx.fillText(String(x), sx(x) - 3, H - B + 14);
  }
  Object.entries(series).forEach(([label, pts], i) => {
    ctx.strokeStyle = ctx.fillStyle = COLORS[i % COLORS.length];
    ctx.beginPath();
    pts.forEach(([x, y], j) => j ? ctx.lineTo(sx(x), sy(y)) : ctx.moveTo(sx(x), sy(y)));
    ctx.stroke();
    pts.forEach(([x, y]) => { ctx.beginPath(); ctx.arc(sx(x), sy(y), 3, 0, 2 * Math.PI); ctx.fill(); });
    ctx.fillText(label, L + 8, T + 12 + 13 * i);
  });
}

function seriesOf(rounds, pick) {
  const out = {};
  rounds.forEach(r => Object.entries(r.metrics || {}).forEach(([k, v]) => {
    if (pick(k)) (out[k] = out[k] || []).push([r.round, v]);
  }));
  return out;
}

let records = [];

function renderMetrics() {
  const rounds = records.filter(r => !r.final);
  document.body.dataset.rounds = String(rounds.length);
  drawChart(document.getElementById("chart-accuracy"), seriesOf(rounds, k => /acc/i.test(k)));
  drawChart(document.getElementById("chart-loss"), seriesOf(rounds, k => /loss/i.test(k)));
  drawChart(document.getElementById("chart-participants"),
            { participants: rounds.map(r => [r.round, (r.participants || []).length]) });
  drawChart(document.getElementById("chart-rate"), {
    "MiB/s": rounds.map(r => [r.round, r.seconds > 0 ? (r.bytes_in + r.bytes_out) / 1048576 / r.seconds : 0])
  });
}

const secs = s => s == null ? "–" : s < 90 ? `${s.toFixed(1)} s` : `${(s / 60).toFixed(1)} min`;

function renderStatus(s) {
  document.getElementById("federation").textContent = s.federation;
  document.getElementById("phase").textContent = s.phase + (s.note ? ` (${s.note})` : "");
  document.getElementById("round").textContent = `${s.round}/${s.rounds_to_train} (${s.rounds_done} done)`;
  document.getElementById("elapsed").textContent = secs(s.elapsed_s);
  document.getElementById("eta").textContent = secs(s.eta_s);
  document.getElementById("best").textContent = s.best && s.best.score != null
    ? `${s.best.metric} ${s.best.score.toFixed(4)} (round ${s.best.round})` : "–";
}

function renderClients(clients) {
  const body = document.querySelector("#clients tbody");
  body.replaceChildren(...clients.map(c => {
    const tr = document.createElement("tr");
    tr.dataset.name = c.name;
    const metrics = Object.entries(c.last_metrics).map(([k, v]) => `${k}=${v.toFixed(4)}`).join(" ");
    const cells = [c.name, c.connected == null ? "–" : c.connected ? "yes" : "no", c.last_seen || "–",
                   c.current_task || "–", c.rounds_done, c.bytes_in, metrics, c.refusals];
    cells.forEach((v, i) => {
      const td = document.createElement("td");
      td.textContent = String(v);
      if (i === 1 && c.connected != null) td.className = c.connected ? "yes" : "no";
      tr.appendChild(td);
    });
    return tr;
  }));
}

async function refresh() {
  try {
    const [status, clients, metrics] = await Promise.all([getJSON("/status"), getJSON("/clients"),
                                                          getJSON("/metrics")]);
    records = metrics;
    renderStatus(status); renderClients(clients); renderMetrics();
    document.body.dataset.loaded = "true";
  } catch (err) {
    document.getElementById("stream").textContent = `error: ${err.message}`;
  }
}

function follow() {
  if (!window.EventSource) return;
  const events = new EventSource(withToken("/events"));
  let pending = null;
  const soon = () => { if (!pending) pending = setTimeout(() => { pending = null; refresh(); }, 200); };
  events.addEventListener("hello", () => { document.getElementById("stream").textContent = "live"; });
  // A closed round's record comes with its event: the charts update even if the run ends right after.
  events.addEventListener("round", (e) => {
    const rec = JSON.parse(e.data).record;
    records = records.filter(r => r.round !== rec.round || r.final !== rec.final).concat([rec])
      .sort((a, b) => a.round - b.round || a.final - b.final);
    renderMetrics();
    soon();
  });
  ["phase", "client", "audit"].forEach(kind => events.addEventListener(kind, soon));
  events.onerror = () => { document.getElementById("stream").textContent = "reconnecting"; };
}

refresh();
follow();
setInterval(refresh, 15000);
