// Fine-tuning form: "Estimate time" asks the server what the run would train on and how long
// it should take, before anything starts. Errors are shown next to the field they name.
(function () {
  "use strict";
  const form = document.getElementById("run-form");
  if (!form) return;
  const out = document.getElementById("estimate");
  const button = document.getElementById("estimate-button");

  function showErrors(errors) {
    form.querySelectorAll("[data-error-for]").forEach((el) => { el.textContent = ""; });
    const general = [];
    for (const [field, messages] of Object.entries(errors || {})) {
      const el = form.querySelector('[data-error-for="' + field + '"]');
      if (el) el.textContent = messages.join(" ");
      general.push(field + ": " + messages.join(" "));
    }
    return general;
  }

  button.addEventListener("click", async () => {
    button.disabled = true;
    out.hidden = false;
    out.textContent = "Estimating…";
    try {
      const response = await fetch(form.dataset.estimateUrl, {
        method: "POST", body: new FormData(form), credentials: "same-origin",
        headers: { "X-CSRFToken": form.querySelector("[name=csrfmiddlewaretoken]").value },
      });
      const body = await response.json();
      if (!response.ok) {
        out.textContent = "Cannot start: " + showErrors(body.errors).join("; ");
        return;
      }
      showErrors({});
      const e = body.estimate;
      out.textContent = "Estimated time: " + Durations.text(e.seconds) + " — " + e.train_texts +
        " training texts (" + e.train_tokens + " tokens over " + e.steps + " steps), " +
        e.validation_texts + " validation and " + e.test_texts + " test texts, " +
        e.evaluations + " evaluations, " + e.parameters.toLocaleString() + " parameters (speed " +
        e.basis + ").";
      out.dataset.seconds = String(e.seconds);
    } catch (err) {
      out.textContent = "The estimate failed: " + err;
    } finally {
      button.disabled = false;
    }
  });
})();
