// Draft page: when the project's websocket says this draft's checks or state changed, fetch the
// re-rendered panel (the server escapes every text) and swap it in.
(function () {
  "use strict";
  const page = document.getElementById("draft-page");
  if (!page) return;
  const draftId = Number(page.dataset.draft);
  const panel = document.getElementById("draft-panel");
  let pending = null;

  async function refresh() {
    pending = null;
    const response = await fetch(page.dataset.panelUrl, { credentials: "same-origin" });
    if (!response.ok) return;
    const focusedId = document.activeElement && document.activeElement.id;
    panel.innerHTML = await response.text(); // server-rendered, escaped HTML
    if (focusedId && document.getElementById(focusedId)) document.getElementById(focusedId).focus();
    document.dispatchEvent(new CustomEvent("draft:refreshed"));
  }

  function schedule() {
    // Several events arrive together (four checks, then the routing): refresh once.
    if (!pending) pending = setTimeout(refresh, 150);
  }

  let retry = 500;
  function connect() {
    const proto = location.protocol === "https:" ? "wss://" : "ws://";
    const socket = new WebSocket(proto + location.host + "/ws/projects/" + page.dataset.project + "/");
    socket.addEventListener("open", () => { retry = 500; });
    socket.addEventListener("message", (event) => {
      const msg = JSON.parse(event.data);
      if (msg.type !== "event") return;
      if ((msg.kind === "check" && msg.draft === draftId) || (msg.kind === "draft" && msg.id === draftId)) schedule();
    });
    socket.addEventListener("close", (event) => {
      if (event.code === 4401 || event.code === 4404) return;
      setTimeout(() => { connect(); schedule(); }, retry);
      retry = Math.min(retry * 2, 10000);
    });
  }
  connect();
  window.ContentStudio = Object.assign(window.ContentStudio || {}, { refreshDraft: refresh });
})();
