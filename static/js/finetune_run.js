// Live fine-tuning run: progress over the websocket, loss and perplexity curves drawn with
// Chart.js (vendored in static/vendor/chartjs). Points carry their step number: a point that
// arrives twice, or that the snapshot already had, is dropped. Text goes in with textContent.
(function () {
  "use strict";
  const script = document.currentScript;
  const runId = script.dataset.run;
  const speedSkip = Number(script.dataset.speedSkip || 0);
  const FINAL = new Set(["succeeded", "failed", "cancelled"]);
  const $ = (id) => document.getElementById(id);
  let status = null;
  let socket = null;
  let retry = 500;
  const seen = new Set();
  const PHASES = { loading: "Loading the model", tokenising: "Tokenising", base_eval: "Measuring the base model",
    training: "Training", evaluating: "Evaluating", test: "Measuring test perplexity", saving: "Saving" };

  const chart = new Chart($("curve"), {
    type: "line",
    data: { datasets: [
      { label: "training loss", data: [], borderColor: "#2d6cdf", pointRadius: 0, borderWidth: 1.5, yAxisID: "y" },
      { label: "validation loss", data: [], borderColor: "#d9822b", pointRadius: 3, borderWidth: 2, yAxisID: "y" },
      { label: "validation perplexity", data: [], borderColor: "#1a7f37", pointRadius: 3, borderDash: [4, 3], yAxisID: "y1" },
    ] },
    options: {
      animation: false, parsing: false, responsive: true,
      scales: {
        // From step 0 (the base model's validation point) to the run's last step, from the
        // first point on: a lone point would otherwise sit in an axis from -1 to 1.
        x: { type: "linear", min: 0, title: { display: true, text: "step" } },
        y: { position: "left", title: { display: true, text: "loss" } },
        y1: { position: "right", title: { display: true, text: "perplexity" }, grid: { drawOnChartArea: false } },
      },
    },
  });
  window.finetuneChart = chart;

  function addPoint(p) {
    if (!p || seen.has(p.step)) return;
    seen.add(p.step);
    if (p.loss != null) chart.data.datasets[0].data.push({ x: p.step, y: p.loss });
    if (p.val_loss != null) chart.data.datasets[1].data.push({ x: p.step, y: p.val_loss });
    if (p.val_ppl != null) chart.data.datasets[2].data.push({ x: p.step, y: p.val_ppl });
    const count = $("points-count");
    count.dataset.count = String(seen.size);
    count.textContent = seen.size + " points";
  }

  function setTotal(total) {
    if (!total) return;
    $("run-total").textContent = total;
    if (chart.options.scales.x.max !== total) {
      chart.options.scales.x.max = total;
      chart.update("none");
    }
  }

  function speedText(run) {
    if (run.steady_tokens_per_second) return run.steady_tokens_per_second.toFixed(1) + " tokens/s (steady state, warm-up steps excluded)";
    if (run.tokens_per_second) return run.tokens_per_second.toFixed(1) + " tokens/s";
    return null;
  }

  function setStatus(run) {
    status = run.status;
    const badge = $("run-status");
    badge.textContent = run.status_label || run.status;
    badge.className = "badge status-" + run.status;
    if (run.error) {
      $("run-error").textContent = run.error + (run.error_field ? " (field: " + run.error_field + ")" : "");
      $("run-error").hidden = false;
    }
    if (FINAL.has(run.status)) {
      $("cancel-form").hidden = true;
      $("run-phase").textContent = "—";
      $("run-left").textContent = "—";
    } else if (run.cancel_requested) {
      $("cancel-button").disabled = true;
      $("cancel-button").textContent = "Stopping…";
    }
    if (run.base_test_ppl != null) $("base-ppl").textContent = run.base_test_ppl.toFixed(3);
    if (run.test_ppl != null) $("tuned-ppl").textContent = run.test_ppl.toFixed(3);
    if (run.best_val_ppl != null) $("best").textContent = "perplexity " + run.best_val_ppl.toFixed(3) + " at step " + run.best_step;
    $("stopped-early").textContent = run.stopped_early ? "yes" : "no";
    if (run.registration_note) {
      $("registration-note").textContent = run.registration_note;
      $("registration-note").hidden = false;
    }
    if (run.result_model) {
      $("result-model").textContent = run.result_model.name;
      $("generate-link").href = $("generate-link").dataset.base + run.result_model.id;
      $("compare-link").href = $("compare-link").dataset.base + run.result_model.id;
      $("result-links").hidden = false;
    }
    setTotal(run.total_steps);
    $("run-step").textContent = run.step;
    if (!FINAL.has(run.status) && run.seconds_left != null) $("run-left").textContent = Durations.text(run.seconds_left);
    const speed = speedText(run);
    if (speed) $("run-speed").textContent = speed;
  }

  function applyState(run) {
    setStatus(run);
    for (const p of run.history || []) addPoint(p);
    chart.update("none");
  }

  function applyProgress(msg) {
    $("run-phase").textContent = PHASES[msg.phase] || msg.phase;
    if (msg.total_steps) {
      $("run-step").textContent = msg.step;
      setTotal(msg.total_steps);
      $("run-epoch").textContent = msg.epoch.toFixed(2);
    }
    if (msg.seconds_left != null) $("run-left").textContent = Durations.text(msg.seconds_left);
    // Past the warm-up steps the worker reports the steady speed.
    if (msg.tokens_per_second != null) $("run-speed").textContent = msg.tokens_per_second.toFixed(1) + " tokens/s" + (msg.step > speedSkip ? " (steady state)" : " (warming up)");
    if (msg.point) { addPoint(msg.point); chart.update("none"); }
  }

  function connect() {
    const proto = location.protocol === "https:" ? "wss://" : "ws://";
    socket = new WebSocket(proto + location.host + "/ws/finetune/" + runId + "/");
    socket.addEventListener("open", () => { $("conn-status").textContent = ""; retry = 500; });
    socket.addEventListener("message", (event) => {
      const msg = JSON.parse(event.data);
      if (msg.type === "finetune.status") applyState(msg.run);
      else if (msg.type === "finetune.progress") applyProgress(msg);
    });
    socket.addEventListener("close", (event) => {
      if (event.code === 4401 || event.code === 4404) { $("conn-status").textContent = "Not allowed to watch this run."; return; }
      if (FINAL.has(status)) return;
      $("conn-status").textContent = "Connection lost; reconnecting…";
      setTimeout(connect, retry);
      retry = Math.min(retry * 2, 10000);
    });
  }

  // Cancel without leaving the page: the run stops at its next batch and keeps its best weights.
  $("cancel-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = event.target;
    $("cancel-button").disabled = true;
    $("cancel-button").textContent = "Stopping…";
    const response = await fetch(form.action, {
      method: "POST", body: new FormData(form), credentials: "same-origin",
      headers: { Accept: "application/json" },
    });
    if (!response.ok) {
      const body = await response.json().catch(() => ({}));
      $("run-error").textContent = body.error || "Cancel failed.";
      $("run-error").hidden = false;
    }
  });

  const initial = JSON.parse($("run-state").textContent);
  applyState(initial);
  if (!FINAL.has(initial.status)) connect();
})();
