// Publications pages: the list and a publication's deliveries update live. A project event on
// the websocket (publication or delivery changed) reloads the server-rendered fragment; a slow
// poll covers a dropped socket. The browser's time zone goes with schedule forms.
(function () {
  "use strict";
  document.querySelectorAll(".tz-offset").forEach((field) => {
    field.value = String(new Date().getTimezoneOffset());
  });
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
