// The generation form: show the chosen template's variables, refill values and show errors
// next to their fields after a refused submit. Values go in with .value / textContent only.
(function () {
  "use strict";
  const form = document.getElementById("generate-form");
  if (!form) return;
  const select = document.getElementById("id_template");
  const free = document.getElementById("free-prompt");
  const groups = form.querySelectorAll(".template-vars");
  const errors = JSON.parse(document.getElementById("form-errors").textContent || "{}");
  const posted = JSON.parse(document.getElementById("form-posted").textContent || "{}");

  for (const [name, value] of Object.entries(posted)) {
    const field = form.elements.namedItem(name);
    if (field && "value" in field) field.value = value;
  }

  function sync() {
    const chosen = select.value;
    free.hidden = chosen !== "";
    free.querySelectorAll("textarea").forEach((el) => (el.disabled = chosen !== ""));
    groups.forEach((group) => {
      const active = group.dataset.template === chosen;
      group.hidden = !active;
      group.querySelectorAll("input, textarea").forEach((el) => (el.disabled = !active));
    });
  }
  select.addEventListener("change", sync);
  sync();

  for (const [field, messages] of Object.entries(errors)) {
    let slot = null;
    form.querySelectorAll("[data-error-for]").forEach((el) => {
      if (el.dataset.errorFor === field && !el.closest("[hidden]")) slot = el;
    });
    if (!slot) continue;
    slot.textContent = messages.join(" ");
    const input = slot.parentElement.querySelector("input, textarea, select");
    if (input) input.setAttribute("aria-invalid", "true");
  }
})();
