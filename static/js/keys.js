// Shared keyboard handling: single-letter shortcuts that stay out of the way while typing,
// and the "?" help overlay. Every shortcut also has a visible button or link.
(function () {
  "use strict";
  const help = document.getElementById("help");

  function typing(target) {
    return target && (target.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName));
  }

  function openHelp() {
    if (!help) return;
    help.hidden = false;
    const close = help.querySelector("[data-help-close]");
    if (close) close.focus();
  }

  function closeHelp() {
    if (help && !help.hidden) { help.hidden = true; return true; }
    return false;
  }

  document.querySelectorAll("[data-help-open]").forEach((b) => b.addEventListener("click", openHelp));
  document.querySelectorAll("[data-help-close]").forEach((b) => b.addEventListener("click", closeHelp));

  const bindings = {};
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape") {
      if (closeHelp()) return;
      if (typing(event.target)) event.target.blur();
      return;
    }
    if (typing(event.target) || event.ctrlKey || event.metaKey || event.altKey) return;
    // Enter on a focused link or button is that control's own action (Apply, a pager link,
    // "Approve selected"), not the page's "open the focused draft".
    if (event.key === "Enter" && event.target.closest && event.target.closest("a, button, summary, [role=button]")) return;
    if (event.key === "?") { event.preventDefault(); openHelp(); return; }
    if (help && !help.hidden) return;
    const handler = bindings[event.key];
    if (handler) { event.preventDefault(); handler(event); }
  });

  window.Keys = { bind: (key, handler) => { bindings[key] = handler; }, typing };
})();
