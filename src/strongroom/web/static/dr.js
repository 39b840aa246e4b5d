// strongroom console, DR plans: a run followed on its plan's page.
//
// The page follows the run's `session` events (console.js, data-live-session);
// this asks /api/dr/runs/ID every few seconds as well, so a run that ended
// before the page opened its event stream, or a stream that broke, still ends
// in the page showing its verdict.
"use strict";

(function () {
  const POLL_MS = 2000;

  function watch(box) {
    const id = box.dataset.liveSession;
    const timer = setInterval(async () => {
      if (box.dataset.status && box.dataset.status !== "running") { clearInterval(timer); return; }
      try {
        const state = await window.sr.api("GET", "/api/dr/runs/" + encodeURIComponent(id));
        if (state && state.status !== "running") {
          clearInterval(timer);
          window.location.reload();
        }
      } catch (e) {
        clearInterval(timer);
        window.sr.flash(e.message);
      }
    }, POLL_MS);
  }

  function start() {
    if (!window.sr) return;
    for (const box of document.querySelectorAll("[data-dr-run][data-live-session]")) watch(box);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
