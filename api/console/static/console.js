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

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("[data-live]").forEach(follow);
});
