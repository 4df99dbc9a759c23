// Live progress of the archive's paraphrase index (Archive page, and a draft that waits for
// it): every 2 s, while some progress box on the page is not done, ask the server how far it
// is. The draft panel is re-rendered by draft.js, so look the boxes up on every tick.
(function () {
  "use strict";
  async function tick() {
    const boxes = document.querySelectorAll('[data-indexing-url][data-done="false"]');
    if (!boxes.length) return;
    const response = await fetch(boxes[0].dataset.indexingUrl, { credentials: "same-origin" });
    if (!response.ok) return;
    const p = await response.json();
    boxes.forEach((box) => {
      box.querySelector('[data-role="indexing-bar"]').value = p.percent;
      box.querySelector('[data-role="indexing-text"]').textContent = p.done
        ? "Paraphrase index complete: " + p.embedded + " of " + p.total + " passages."
        : "Indexing the archive for paraphrase search: " + p.percent + "% (" + p.embedded +
          " of " + p.total + " passages).";
      if (p.done) box.dataset.done = "true";
    });
  }
  setInterval(() => { tick().catch(() => {}); }, 2000);
})();
