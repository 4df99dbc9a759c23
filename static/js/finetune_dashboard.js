// Acceptance dashboard charts (Chart.js, vendored): rates and edit effort per model version
// and template, so an admin can see whether a tuned model is really better.
(function () {
  "use strict";
  const el = document.getElementById("acceptance-rows");
  if (!el || !document.getElementById("chart-rates")) return;
  const rows = JSON.parse(el.textContent);
  const labels = rows.map((r) => r.model + " · " + r.template);
  const pct = (v) => (v == null ? null : Math.round(v * 1000) / 10);
  new Chart(document.getElementById("chart-rates"), {
    type: "bar",
    data: { labels, datasets: [
      { label: "approval rate %", data: rows.map((r) => pct(r.approval_rate)), backgroundColor: "#1a7f37" },
      { label: "held rate %", data: rows.map((r) => pct(r.held_rate)), backgroundColor: "#c62828" },
    ] },
    options: { animation: false, scales: { y: { min: 0, max: 100 } } },
  });
  new Chart(document.getElementById("chart-edits"), {
    type: "bar",
    data: { labels, datasets: [
      { label: "edit distance (share of words) %", data: rows.map((r) => pct(r.edit_ratio)), backgroundColor: "#d9822b", yAxisID: "y" },
      { label: "median time to approval (min)", data: rows.map((r) => r.median_seconds_to_approval == null ? null : r.median_seconds_to_approval / 60), backgroundColor: "#2d6cdf", yAxisID: "y1" },
    ] },
    options: { animation: false, scales: { y: { min: 0, position: "left" }, y1: { min: 0, position: "right", grid: { drawOnChartArea: false } } } },
  });
})();
