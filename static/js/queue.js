// The approval queue: keyboard navigation (j/k, Enter, x, a, r, e, c, /), selection for bulk
// actions, and live updates: when drafts arrive or change state the rows are re-rendered by
// the server (escaped) and swapped in, keeping focus and selection. An approval by `a` is
// committed at once and can be taken back for a few seconds (the toast's Undo, or `u`): the
// server moves it back with its own audited transition; a bulk approval asks first.
(function () {
  "use strict";
  const table = document.getElementById("queue");
  if (!table) return;
  const body = document.getElementById("queue-rows");
  const live = document.getElementById("live-status");
  const counter = document.getElementById("selected-count");
  const csrf = document.querySelector("#bulk-form [name=csrfmiddlewaretoken]").value;
  let focusedId = null;

  const rows = () => Array.from(body.querySelectorAll("tr.queue-row"));
  const focused = () => rows().find((r) => r.dataset.draft === focusedId) || null;

  function focusRow(row) {
    rows().forEach((r) => { r.classList.remove("focused"); r.removeAttribute("aria-selected"); });
    if (!row) { focusedId = null; return; }
    focusedId = row.dataset.draft;
    row.classList.add("focused");
    row.setAttribute("aria-selected", "true");
    row.focus({ preventScroll: false });
  }

  function move(step) {
    const all = rows();
    if (!all.length) return;
    const at = all.indexOf(focused());
    const next = at < 0 ? (step > 0 ? 0 : all.length - 1) : Math.min(all.length - 1, Math.max(0, at + step));
    focusRow(all[next]);
  }

  function updateCount() {
    const n = body.querySelectorAll("input[name=draft]:checked").length;
    counter.textContent = n + " selected";
  }

  async function act(action) {
    const row = focused();
    if (!row) return;
    if (row.dataset.canDecide !== "1") { live.textContent = "Your role cannot decide on this draft."; return; }
    let reason = "";
    if (action === "reject") {
      reason = window.prompt("Reason for rejecting (optional):", "");
      if (reason === null) return;
    }
    const form = new FormData();
    form.append("action", action);
    form.append("version", row.dataset.version);
    form.append("reason", reason);
    const response = await fetch(row.dataset.actionUrl, {
      method: "POST", body: form, credentials: "same-origin",
      headers: { "X-CSRFToken": csrf, Accept: "application/json" },
    });
    const result = await response.json();
    live.textContent = response.ok
      ? "Draft " + (action === "approve" ? "approved" : "rejected") + "."
      : result.detail || "That did not work.";
    if (response.ok && action === "approve") offerUndo(row, result.version);
    const index = rows().indexOf(row);
    await refresh();
    const after = rows();
    if (after.length) focusRow(after[Math.min(index, after.length - 1)]);
  }

  // --- undo of an approval ------------------------------------------------------------------
  const toast = document.getElementById("undo-toast");
  const toastMessage = document.getElementById("undo-message");
  const toastLeft = document.getElementById("undo-left");
  const undoSeconds = Number(table.dataset.undoSeconds || 8);
  let pending = null; // { id, url, version, until }
  let tick = null;

  function hideUndo() {
    pending = null;
    toast.hidden = true;
    clearInterval(tick);
    tick = null;
  }

  function showLeft() {
    if (!pending) return;
    const left = Math.ceil((pending.until - Date.now()) / 1000);
    if (left <= 0) { hideUndo(); return; }
    toastLeft.textContent = left + " s";
  }

  function offerUndo(row, version) {
    const link = row.querySelector("a.row-link");
    pending = { id: row.dataset.draft, url: row.dataset.actionUrl, version: version, until: Date.now() + undoSeconds * 1000 };
    toastMessage.textContent = "Approved: " + (link ? link.textContent.trim() : "draft " + row.dataset.draft) + ".";
    toast.hidden = false;
    clearInterval(tick);
    showLeft();
    tick = setInterval(showLeft, 250);
  }

  async function undo() {
    if (!pending) return;
    const taken = pending;
    hideUndo();
    const form = new FormData();
    form.append("action", "undo_approve");
    form.append("version", taken.version);
    form.append("reason", "Undone from the queue");
    const response = await fetch(taken.url, {
      method: "POST", body: form, credentials: "same-origin",
      headers: { "X-CSRFToken": csrf, Accept: "application/json" },
    });
    const result = await response.json().catch(() => ({}));
    live.textContent = response.ok
      ? "Approval undone: the draft is awaiting review again."
      : "Could not undo: " + (result.detail || "the draft changed meanwhile.");
    focusedId = taken.id;
    await refresh();
    const back = rows().find((r) => r.dataset.draft === taken.id);
    if (back) focusRow(back);
  }
  document.getElementById("undo-button").addEventListener("click", undo);

  // A bulk approval cannot be undone from here: ask first.
  document.getElementById("bulk-form").addEventListener("submit", (event) => {
    const button = event.submitter;
    if (!button || button.value !== "approve") return;
    const n = body.querySelectorAll("input[name=draft]:checked").length;
    if (!window.confirm("Approve " + n + " draft" + (n === 1 ? "" : "s") + "? This cannot be undone from the queue.")) {
      event.preventDefault();
    }
  });

  function open(extra) {
    const row = focused();
    if (row) window.location.href = row.dataset.url + (extra || "");
  }

  body.addEventListener("click", (event) => {
    const row = event.target.closest("tr.queue-row");
    if (row && event.target.tagName !== "A" && event.target.tagName !== "INPUT") focusRow(row);
  });
  body.addEventListener("change", updateCount);
  document.getElementById("select-all").addEventListener("change", (event) => {
    body.querySelectorAll("input[name=draft]").forEach((box) => { box.checked = event.target.checked; });
    updateCount();
  });

  Keys.bind("j", () => move(1));
  Keys.bind("k", () => move(-1));
  Keys.bind("Enter", () => open(""));
  Keys.bind("o", () => open(""));
  Keys.bind("x", () => {
    const row = focused();
    if (!row) return;
    const box = row.querySelector("input[name=draft]");
    box.checked = !box.checked;
    updateCount();
  });
  Keys.bind("a", () => act("approve"));
  Keys.bind("u", undo);
  Keys.bind("/", () => { const box = document.getElementById("f-search"); box.focus(); box.select(); });
  Keys.bind("r", () => act("reject"));
  Keys.bind("e", () => open("&edit=1"));
  Keys.bind("c", () => open("&comment=1"));

  // --- live updates -----------------------------------------------------------------------
  let timer = null;
  async function refresh() {
    timer = null;
    const checked = new Set(Array.from(body.querySelectorAll("input[name=draft]:checked")).map((b) => b.value));
    const response = await fetch(table.dataset.rowsUrl, { credentials: "same-origin" });
    if (!response.ok) return;
    body.innerHTML = await response.text(); // server-rendered, escaped
    body.querySelectorAll("input[name=draft]").forEach((box) => { box.checked = checked.has(box.value); });
    const row = focused();
    if (row) { row.classList.add("focused"); row.setAttribute("aria-selected", "true"); }
    // The fragment carries the total of the whole queue (all pages), not just these rows.
    const meta = body.querySelector("tr.queue-meta");
    if (meta) {
      const total = Number(meta.dataset.count);
      document.getElementById("queue-count").textContent = total + " draft" + (total === 1 ? "" : "s");
    }
    updateCount();
    return rows().length;
  }
  function schedule() { if (!timer) timer = setTimeout(refresh, 200); }

  let retry = 500;
  function connect() {
    const proto = location.protocol === "https:" ? "wss://" : "ws://";
    const socket = new WebSocket(proto + location.host + "/ws/queue/");
    // Refresh on every (re)connection: changes between the page's render (or the last
    // connection) and this subscription were never announced to it.
    socket.addEventListener("open", () => { retry = 500; live.textContent = "Live."; schedule(); });
    socket.addEventListener("message", (event) => {
      const msg = JSON.parse(event.data);
      if (msg.type === "event" && (msg.kind === "draft" || msg.kind === "check")) schedule();
    });
    socket.addEventListener("close", (event) => {
      // 4401: signed out; 4404: a member of no project. Retrying would change nothing.
      if (event.code === 4401) { live.textContent = "Signed out: reload the page to sign in."; return; }
      if (event.code === 4404) { live.textContent = "Not live: you are not a member of any project."; return; }
      live.textContent = "Reconnecting…";
      setTimeout(connect, retry);
      retry = Math.min(retry * 2, 10000);
    });
  }
  connect();
  const first = rows()[0];
  if (first) focusRow(first);
})();
