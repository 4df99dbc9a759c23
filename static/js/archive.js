// Archive page: while an import runs, poll its status once a second and update the row.
(function () {
  "use strict";
  const rows = document.querySelectorAll(".import-run");
  rows.forEach((row) => {
    if (row.dataset.status !== "queued" && row.dataset.status !== "running") return;
    const labels = { queued: "Queued", running: "Running", succeeded: "Finished", failed: "Failed" };
    const timer = setInterval(async () => {
      const response = await fetch(row.dataset.url, { credentials: "same-origin" });
      if (!response.ok) return;
      const run = await response.json();
      const status = row.querySelector('[data-role="status"]');
      status.textContent = labels[run.status] || run.status;
      status.className = "badge status-" + run.status;
      row.querySelector('[data-role="progress"]').value = run.percent;
      row.querySelector('[data-role="counts"]').textContent = run.processed + " / " + run.total;
      row.querySelector('[data-role="imported"]').textContent = run.imported;
      row.querySelector('[data-role="duplicates"]').textContent = run.duplicates;
      row.querySelector('[data-role="error-count"]').textContent = run.error_count;
      const list = row.querySelector('[data-role="errors"]');
      list.replaceChildren(...run.errors.map((e) => {
        const li = document.createElement("li");
        li.textContent = e.line + ": " + e.message;
        return li;
      }));
      if (run.error) {
        const div = document.createElement("div");
        div.className = "error";
        div.textContent = run.error;
        status.after(div);
      }
      if (run.status === "succeeded" || run.status === "failed") {
        row.dataset.status = run.status;
        clearInterval(timer);
      }
    }, 1000);
  });
})();
