// Draft page: live refresh of the panel (status, text, checks) and the activity (comments,
// revisions, history) when the project's websocket mentions this draft; keyboard shortcuts;
// the editor with its soft lock. Server-rendered fragments only: no untrusted text is built here.
(function () {
  "use strict";
  const page = document.getElementById("draft-page");
  if (!page) return;
  const draftId = Number(page.dataset.draft);
  const panel = document.getElementById("draft-panel");
  const activity = document.getElementById("draft-activity");
  const editorSection = document.getElementById("editor-section");
  const csrfInput = document.querySelector("[name=csrfmiddlewaretoken]");
  const csrf = csrfInput ? csrfInput.value : "";
  let editing = false;
  let lockTimer = null;

  async function swap(url, target) {
    const response = await fetch(url, { credentials: "same-origin" });
    if (!response.ok) return;
    const focusedId = document.activeElement && document.activeElement.id;
    target.innerHTML = await response.text(); // server-rendered, escaped HTML
    if (focusedId && document.getElementById(focusedId)) document.getElementById(focusedId).focus();
    wirePanel();
  }

  let pending = null;
  function schedule() {
    // Several events arrive together (four checks, then the routing): refresh once.
    if (pending) return;
    pending = setTimeout(async () => {
      pending = null;
      await swap(page.dataset.panelUrl, panel);
      await swap(page.dataset.activityUrl + location.search.replace(/^\?/, "?"), activity);
      const status = document.getElementById("draft-status");
      const versionField = document.getElementById("edit-version");
      if (status && versionField && !editing) versionField.value = status.dataset.version;
    }, 150);
  }

  let retry = 500;
  function connect() {
    const proto = location.protocol === "https:" ? "wss://" : "ws://";
    const socket = new WebSocket(proto + location.host + "/ws/projects/" + page.dataset.project + "/");
    // On every (re)connection fetch the fragments once: whatever happened between the page's
    // render (or the last connection) and this subscription was never announced to it. (The
    // checks of a just-saved edit often finish before the new page's socket opens.)
    socket.addEventListener("open", () => { retry = 500; schedule(); });
    socket.addEventListener("message", (event) => {
      const msg = JSON.parse(event.data);
      if (msg.type !== "event") return;
      if ((msg.kind === "check" && msg.draft === draftId) || (msg.kind === "draft" && msg.id === draftId)) schedule();
    });
    socket.addEventListener("close", (event) => {
      if (event.code === 4401 || event.code === 4404) return;
      setTimeout(connect, retry);
      retry = Math.min(retry * 2, 10000);
    });
  }
  connect();

  // --- the editor and its lock ------------------------------------------------------------
  const editor = document.getElementById("editor");
  const bodyField = document.getElementById("edit-body");
  const editForm = document.getElementById("edit-form");

  async function lock(release) {
    const form = new FormData();
    if (release) form.append("release", "1");
    const response = await fetch(page.dataset.lockUrl, {
      method: "POST", body: form, credentials: "same-origin", headers: { "X-CSRFToken": csrf },
    });
    return response.ok ? response.json() : null;
  }

  async function openEditor() {
    // Only where the panel offers editing (awaiting review, held, changes requested): "e" or
    // ?edit=1 on an approved or checking draft must not open an editor whose save would fail.
    if (!editorSection || editing || !document.getElementById("edit-open")) return;
    const source = document.getElementById("conflict-theirs") || document.getElementById("body-html");
    editor.replaceChildren(source.content.cloneNode(true)); // sanitised on the server
    editorSection.hidden = false;
    editing = true;
    editor.focus();
    const state = await lock(false);
    if (state && !state.mine) {
      const note = document.createElement("p");
      note.className = "lock-banner";
      note.textContent = "Being edited by " + state.holder + ": you can still save, but one of you will have to merge.";
      editorSection.insertBefore(note, editForm);
    }
    lockTimer = setInterval(() => lock(false), 45000);
  }

  function closeEditor() {
    if (!editing) return;
    editing = false;
    editorSection.hidden = true;
    clearInterval(lockTimer);
    lock(true);
  }

  if (editForm) {
    editForm.addEventListener("submit", () => {
      bodyField.value = editor.innerHTML;
      clearInterval(lockTimer);
    });
    document.getElementById("edit-cancel").addEventListener("click", closeEditor);
    editorSection.querySelectorAll("[data-cmd]").forEach((button) => {
      button.addEventListener("click", () => {
        editor.focus();
        let arg = button.dataset.arg || null;
        if (button.dataset.cmd === "createLink") {
          arg = window.prompt("Link address (https://…)");
          if (!arg) return;
        }
        document.execCommand(button.dataset.cmd, false, arg);
      });
    });
    window.addEventListener("pagehide", () => {
      // Leaving while editing: give the lock back (a beacon survives the page going away).
      if (!editing || !navigator.sendBeacon) return;
      const form = new FormData();
      form.append("csrfmiddlewaretoken", csrf);
      form.append("release", "1");
      navigator.sendBeacon(page.dataset.lockUrl, form);
    });
  }

  // --- actions, comments ------------------------------------------------------------------
  function submitAction(name) {
    const form = panel.querySelector('.action-form[data-action="' + name + '"]');
    if (!form) return false;
    const reason = form.querySelector("[name=reason]");
    if (reason && reason.required && !reason.value.trim()) { reason.focus(); return true; }
    form.requestSubmit();
    return true;
  }

  function focusComment(parentId, author) {
    const box = document.getElementById("comment-body");
    if (!box) return;
    document.getElementById("comment-parent").value = parentId || "";
    const note = document.getElementById("reply-to");
    note.hidden = !parentId;
    note.textContent = parentId ? "Replying to " + author : "";
    box.focus();
  }

  function wirePanel() {
    const open = document.getElementById("edit-open");
    if (open) open.addEventListener("click", openEditor);
    activity.querySelectorAll("[data-reply]").forEach((button) => {
      button.addEventListener("click", () => focusComment(button.dataset.reply, button.dataset.replyAuthor));
    });
  }
  wirePanel();

  Keys.bind("a", () => submitAction("approve"));
  Keys.bind("r", () => {
    const form = panel.querySelector('.action-form[data-action="reject"]');
    if (!form) return;
    const reason = form.querySelector("[name=reason]");
    if (reason && !reason.value) { reason.focus(); reason.placeholder = "Reason (optional) — Enter to reject"; return; }
    form.requestSubmit();
  });
  Keys.bind("e", openEditor);
  Keys.bind("c", () => focusComment(null, null));
  Keys.bind("j", () => { if (page.dataset.nextUrl) location.href = page.dataset.nextUrl; });
  Keys.bind("k", () => { if (page.dataset.prevUrl) location.href = page.dataset.prevUrl; });

  const params = new URLSearchParams(location.search);
  if (params.get("edit") === "1" || document.getElementById("conflict-theirs")) openEditor();
  if (params.get("comment") === "1") focusComment(null, null);
})();
