// Publications pages: the list and a publication's deliveries update live. A project event on
// the websocket (publication or delivery changed) reloads the server-rendered fragment; a slow
// poll covers a dropped socket. The browser's time zone goes with schedule forms; the correction
// form uses the draft editor.
(function () {
  "use strict";
  document.querySelectorAll(".tz-offset").forEach((field) => {
    field.value = String(new Date().getTimezoneOffset());
  });
  // The correction form edits the text in the draft editor (a contenteditable with the same
  // toolbar); the HTML it holds goes in the form's textarea on submit and is sanitised on the
  // server. The editor opens with the server's sanitised copy, never text built here.
  const correctForm = document.getElementById("correct-form");
  if (correctForm) {
    const editor = document.getElementById("c-editor");
    const field = document.getElementById("c-body");
    editor.replaceChildren(document.getElementById("c-body-html").content.cloneNode(true));
    editor.hidden = false;
    document.getElementById("c-toolbar").hidden = false;
    field.hidden = true;
    correctForm.addEventListener("submit", () => {
      field.value = editor.innerHTML;
    });
    correctForm.querySelectorAll("[data-cmd]").forEach((button) => {
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
  }
  const list = document.getElementById("publications");
  const deliveries = document.getElementById("deliveries");
  const target = list ? document.getElementById("publication-rows") : deliveries;
  if (!target) return;
  const url = list ? list.dataset.rowsUrl : deliveries.dataset.url;
  const project = (list || deliveries).dataset.project;
  let pending = null;

  async function refresh() {
    pending = null;
    const response = await fetch(url, { credentials: "same-origin" });
    if (response.ok) target.innerHTML = await response.text(); // server-rendered, escaped HTML
  }
  function soon() {
    if (!pending) pending = setTimeout(refresh, 150);
  }
  function connect() {
    const proto = location.protocol === "https:" ? "wss://" : "ws://";
    const socket = new WebSocket(proto + location.host + "/ws/projects/" + project + "/");
    socket.onmessage = (message) => {
      const event = JSON.parse(message.data);
      if (event.type === "event" && (event.kind === "publication" || event.kind === "delivery")) soon();
    };
    socket.onclose = () => setTimeout(connect, 2000);
  }
  connect();
  setInterval(refresh, 10000);
})();
