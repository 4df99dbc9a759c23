// Live job page: candidates stream side by side over a websocket.
// Frames are numbered; each delta says at which character offset its text starts, so a frame
// that arrives twice changes nothing and a gap is noticed and repaired from a fresh snapshot.
// Model text is inserted with textContent only.
(function () {
  "use strict";
  const script = document.currentScript;
  const jobId = script.dataset.job;
  const cancelUrl = script.dataset.cancelUrl;
  const statusEl = document.getElementById("job-status");
  const errorEl = document.getElementById("job-error");
  const connEl = document.getElementById("conn-status");
  const cancelForm = document.getElementById("cancel-form");
  const FINAL = new Set(["succeeded", "failed", "cancelled"]);
  const LABELS = { queued: "Queued", running: "Running", succeeded: "Succeeded", failed: "Failed", cancelled: "Cancelled" };

  let seq = 0;
  let jobStatus = null;
  let reloading = false;
  const cands = new Map();
  document.querySelectorAll(".candidate").forEach((el) => {
    cands.set(Number(el.dataset.index), {
      el, text: el.querySelector('[data-role="text"]'), status: el.querySelector('[data-role="status"]'),
      stats: el.querySelector('[data-role="stats"]'), draft: el.querySelector('[data-role="draft"]'),
      cutoff: el.querySelector('[data-role="cutoff"]'),
      score: el.querySelector('[data-role="score"]'), best: el.querySelector('[data-role="best"]'),
      offbrief: el.querySelector('[data-role="offbrief"]'), reasons: el.querySelector('[data-role="reasons"]'),
      value: el.querySelector('[data-role="text"]').textContent, tokens: 0, firstAt: null, lastAt: null,
    });
  });

  function setJobStatus(status, error) {
    jobStatus = status;
    statusEl.textContent = LABELS[status] || status;
    statusEl.className = "badge status-" + status;
    if (error) { errorEl.textContent = error; errorEl.hidden = false; }
    if (cancelForm && FINAL.has(status)) cancelForm.hidden = true;
  }

  function setCandStatus(c, status, finishReason) {
    c.status.textContent = status;
    c.status.className = "badge status-" + status;
    // "length": the candidate stopped at max new tokens, not where the model ended it.
    if (finishReason !== undefined) c.cutoff.hidden = finishReason !== "length";
  }

  function renderStats(c, tps) {
    let rate = tps;
    if (rate == null && c.firstAt && c.lastAt > c.firstAt && c.tokens > 1) {
      rate = (c.tokens - 1) / ((c.lastAt - c.firstAt) / 1000);
    }
    c.stats.textContent = c.tokens + " tokens" + (rate ? " · " + rate.toFixed(1) + " tok/s" : "");
  }

  function setDraftLink(c, url) {
    if (!url || c.draft.querySelector("a")) return;
    const a = document.createElement("a");
    a.href = url;
    a.textContent = "Open draft";
    c.draft.replaceChildren(a);
  }

  // Quality signals arrive with the drafts: show the score and reasons, then order best first
  // by the rank the server gives (generation.quality.rank_order: on brief first, then score).
  function applyQuality(rows) {
    let scored = false;
    for (const row of rows) {
      const c = cands.get(row.index);
      const q = row.quality;
      if (!c || !q || !c.score) continue;
      scored = true;
      c.el.dataset.score = String(q.score);
      c.el.dataset.rank = q.rank == null ? "" : String(q.rank);
      c.score.textContent = "quality " + Number(q.score).toFixed(2);
      c.score.title = q.reasons.join(" · ");
      c.score.hidden = false;
      c.best.hidden = !q.best;
      c.offbrief.hidden = !q.off_brief;
      c.reasons.replaceChildren(...q.reasons.map((r) => { const li = document.createElement("li"); li.textContent = r; return li; }));
    }
    if (!scored) return;
    const list = [...cands.entries()].sort((a, b) => {
      const ra = a[1].el.dataset.rank === "" ? Infinity : Number(a[1].el.dataset.rank);
      const rb = b[1].el.dataset.rank === "" ? Infinity : Number(b[1].el.dataset.rank);
      return (ra === rb ? 0 : ra < rb ? -1 : 1) || a[0] - b[0];
    });
    const box = document.getElementById("candidates");
    for (const [, c] of list) box.appendChild(c.el);
  }

  function applySnapshot(msg) {
    seq = msg.seq;
    setJobStatus(msg.status, msg.error);
    for (const row of msg.candidates) {
      const c = cands.get(row.index);
      if (!c) continue;
      c.value = row.text;
      c.text.textContent = row.text;
      c.tokens = row.tokens;
      setCandStatus(c, row.status, row.finish_reason);
      renderStats(c, row.tokens_per_second);
      setDraftLink(c, row.draft_url);
    }
    applyQuality(msg.candidates);
  }

  let socket = null;
  let retry = 500;

  function resync() {
    if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify({ action: "resync" }));
  }

  function applyTokens(msg) {
    if (msg.seq <= seq) return; // already included in what we have
    if (msg.seq > seq + 1) { resync(); }
    seq = msg.seq;
    const now = performance.now();
    for (const d of msg.deltas) {
      const c = cands.get(d.i);
      if (!c) {
        // The job draws more candidates (none of its own covered the brief): the server
        // renders them and the note saying so; the reloaded page streams them on.
        if (!reloading) { reloading = true; location.reload(); }
        return;
      }
      if (d.o > c.value.length) { resync(); continue; }
      c.value = c.value.slice(0, d.o) + d.t;
      c.text.textContent = c.value;
      if (!c.firstAt) c.firstAt = now;
      c.lastAt = now;
      c.tokens = d.n;
      if (c.status.textContent === "pending") setCandStatus(c, "streaming");
      renderStats(c, null);
      c.text.scrollTop = c.text.scrollHeight;
    }
  }

  function onMessage(event) {
    const msg = JSON.parse(event.data);
    switch (msg.type) {
      case "job.snapshot": applySnapshot(msg); break;
      case "job.tokens": applyTokens(msg); break;
      case "job.status":
        if (msg.seq > seq) seq = msg.seq;
        // A job that drew more candidates (none of its own covered the brief): the page
        // shows them, and the note saying so, as the server renders them.
        if (FINAL.has(msg.status) && msg.candidates.some((row) => !cands.has(row.index))) {
          if (!reloading) { reloading = true; location.reload(); }
          return;
        }
        setJobStatus(msg.status, msg.error);
        for (const row of msg.candidates) {
          const c = cands.get(row.index);
          if (!c) continue;
          setCandStatus(c, row.status, row.finish_reason);
          if (row.tokens) c.tokens = row.tokens;
          renderStats(c, row.tokens_per_second);
        }
        applyQuality(msg.candidates);
        break;
      case "job.draft": {
        const c = cands.get(msg.index);
        if (c) setDraftLink(c, msg.url);
        break;
      }
    }
  }

  function connect() {
    const proto = location.protocol === "https:" ? "wss://" : "ws://";
    socket = new WebSocket(proto + location.host + "/ws/jobs/" + jobId + "/");
    socket.addEventListener("open", () => { connEl.textContent = ""; retry = 500; });
    socket.addEventListener("message", onMessage);
    socket.addEventListener("close", (event) => {
      if (event.code === 4401 || event.code === 4404) { connEl.textContent = "Not allowed to watch this job."; return; }
      if (FINAL.has(jobStatus)) return;
      connEl.textContent = "Connection lost; reconnecting…";
      setTimeout(connect, retry);
      retry = Math.min(retry * 2, 10000);
    });
  }

  const initial = JSON.parse(document.getElementById("job-snapshot").textContent);
  applySnapshot(initial);
  if (!FINAL.has(initial.status)) connect();

  if (cancelForm) {
    cancelForm.addEventListener("submit", async (event) => {
      event.preventDefault();
      const button = cancelForm.querySelector("button");
      button.disabled = true;
      button.textContent = "Cancelling…";
      const token = cancelForm.querySelector("[name=csrfmiddlewaretoken]").value;
      try {
        const response = await fetch(cancelUrl, { method: "POST", headers: { "X-CSRFToken": token }, credentials: "same-origin" });
        const body = await response.json();
        if (!response.ok) { errorEl.textContent = body.detail || "Could not cancel."; errorEl.hidden = false; button.disabled = false; button.textContent = "Cancel job"; return; }
        if (FINAL.has(body.status)) applySnapshot(Object.assign({ seq: seq }, body));
      } catch (err) {
        cancelForm.submit();
      }
    });
  }
})();
