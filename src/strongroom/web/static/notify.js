// strongroom console, notifications page: shows what "Send a test" answered
// beside its button (console.js sends the request and fires sr:done).
"use strict";

document.addEventListener("sr:done", (event) => {
  const button = event.target.closest("[data-notify-test]");
  if (!button) return;
  const name = button.dataset.notifyTest;
  const out = Array.from(document.querySelectorAll("[data-test-result]")).find((el) => el.dataset.testResult === name);
  if (!out) return;
  const answer = event.detail || {};
  out.textContent = answer.delivered ? "Delivered." : "Not delivered: " + (answer.error || "unknown error");
  out.className = "test-result " + (answer.delivered ? "ok" : "bad");
});
