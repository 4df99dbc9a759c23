// Durations as people read them, the same rule as contentstudio/durations.py (a browser test
// compares the two): "about 40 s", "about 12 min", "about 1 h 50 min".
(function () {
  "use strict";
  function text(seconds, about) {
    if (seconds == null || !isFinite(seconds)) return "—";
    const whole = Math.max(0, Math.round(seconds));
    let out;
    if (whole === 0) return "under a second";
    if (whole < 60) {
      out = whole + " s";
    } else if (Math.round(whole / 60) < 60) {
      out = Math.round(whole / 60) + " min";
    } else {
      const minutes = Math.round(whole / 60);
      const hours = Math.floor(minutes / 60);
      const rest = minutes % 60;
      out = rest ? hours + " h " + rest + " min" : hours + " h";
    }
    return about === false ? out : "about " + out;
  }
  window.Durations = { text: text };
})();
