// Base against tuned: two ordinary jobs streamed side by side (the job websocket protocol:
// a snapshot, then numbered token frames whose deltas say at which offset their text starts).
(function () {
  "use strict";
  const FINAL = new Set(["succeeded", "failed", "cancelled"]);
  document.querySelectorAll(".compare-col").forEach((col) => {
    const jobId = col.dataset.job;
    const textEl = col.querySelector('[data-role="text"]');
    const statusEl = col.querySelector('[data-role="status"]');
    let text = "";
    let seq = 0;
    let status = null;
    let socket = null;

    function setStatus(s) {
      status = s;
      statusEl.textContent = s;
      statusEl.className = "badge status-" + s;
    }
    function resync() {
      if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify({ action: "resync" }));
    }
    function connect() {
      const proto = location.protocol === "https:" ? "wss://" : "ws://";
      socket = new WebSocket(proto + location.host + "/ws/jobs/" + jobId + "/");
      socket.addEventListener("message", (event) => {
        const msg = JSON.parse(event.data);
        if (msg.type === "job.snapshot") {
          seq = msg.seq;
          setStatus(msg.status);
          text = (msg.candidates[0] || {}).text || "";
          textEl.textContent = text;
        } else if (msg.type === "job.tokens") {
          if (msg.seq <= seq) return;
          if (msg.seq > seq + 1) resync();
          seq = msg.seq;
          for (const d of msg.deltas) {
            if (d.i !== 0) continue;
            if (d.o > text.length) { resync(); continue; }
            text = text.slice(0, d.o) + d.t;
            textEl.textContent = text;
          }
        } else if (msg.type === "job.status") {
          if (msg.seq > seq) seq = msg.seq;
          setStatus(msg.status);
          if (FINAL.has(msg.status)) resync();
        }
      });
      socket.addEventListener("close", () => { if (!FINAL.has(status)) setTimeout(connect, 1000); });
    }
    connect();
  });
})();
