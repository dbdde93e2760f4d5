// Live updates for the order page: the server pushes the order's panel, rendered anew, over
// server-sent events each time the order changes (api/console/orders.py); this only puts it in
// place. No framework, nothing fetched from elsewhere. Without JavaScript, reloading the page
// shows the same panel.
"use strict";

function follow(panel) {
  const source = new EventSource(panel.dataset.live);
  source.addEventListener("order", (message) => {
    // Keep keyboard focus on a control that survives the update (the Cancel button, say).
    const focused = document.activeElement && document.activeElement.dataset.testid;
    panel.innerHTML = message.data;
    panel.dataset.updates = String(Number(panel.dataset.updates || "0") + 1);
    if (focused) {
      const again = panel.querySelector(`[data-testid="${focused}"]`);
      if (again) again.focus();
    }
  });
  source.addEventListener("ended", () => {
    panel.dataset.ended = "true";
    source.close();
  });
}

// The operator's load generator: its figures every second, drawn as lines (no chart library).
function draw(svg, values) {
  const line = svg.querySelector("polyline");
  const known = values.map((v) => (v === null ? 0 : v));
  const top = Math.max(1, ...known);
  const step = 300 / Math.max(1, known.length - 1);
  line.setAttribute(
    "points",
    known.map((v, i) => `${(i * step).toFixed(1)},${(78 - (v / top) * 74).toFixed(1)}`).join(" "),
  );
  svg.dataset.points = String(known.length);
  svg.dataset.top = String(top);
}

function watchLoad(panel) {
  const source = new EventSource(panel.dataset.loadLive);
  source.addEventListener("load", (message) => {
    const run = JSON.parse(message.data);
    if (run === null) { source.close(); return; }
    for (const name of ["placed", "ended", "in_flight", "p50_ms"]) {
      panel.querySelector(`[data-field="${name}"]`).textContent = run[name] ?? "—";
    }
    panel.querySelector('[data-field="state"]').textContent = run.done ? "done" : "running";
    panel.querySelector('[data-field="outcomes"]').textContent = Object.entries(run.outcomes)
      .map(([outcome, count]) => `${outcome} ${count}`).join(" · ");
    panel.querySelectorAll("[data-chart]").forEach((svg) => {
      draw(svg, run.series.map((second) => second[svg.dataset.chart]));
    });
    panel.dataset.done = String(run.done);
    if (run.done) source.close();
  });
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("[data-live]").forEach(follow);
  document.querySelectorAll("[data-load-live]").forEach(watchLoad);
});
