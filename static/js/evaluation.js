// The Evaluation page's live progress: polls the run's status while it runs, updates the
// progress bar, and reloads the page once it ends (the results table and chart are server-made).
(function () {
  "use strict";
  const live = document.getElementById("evaluation-live");
  if (!live || live.dataset.final === "1") return;
  async function poll() {
    try {
      const response = await fetch(live.dataset.statusUrl, { headers: { Accept: "application/json" } });
      if (response.ok) {
        const state = await response.json();
        document.getElementById("evaluation-status").textContent = state.status;
        document.getElementById("evaluation-progress").value = state.done;
        document.getElementById("evaluation-done").textContent = state.done;
        document.getElementById("evaluation-estimate").textContent = state.estimate;
        document.getElementById("evaluation-left").textContent = state.left ? state.left + " left" : "";
        if (state.final) { window.location.reload(); return; }
      }
    } catch (e) { /* the next poll tries again */ }
    window.setTimeout(poll, 1000);
  }
  window.setTimeout(poll, 1000);
})();
