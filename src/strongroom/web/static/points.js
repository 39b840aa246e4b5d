// strongroom console, the snapshot pages: the restore form (the selected
// entries, or the folder shown, as the paths to restore) and its progress box,
// which follows the session by polling /api/restores/ID (console.js follows
// the same box from /api/events once its data-live-session is set).
"use strict";

(function () {
  const LIVE = ["pending", "running"];

  function setField(box, name, text) {
    for (const el of box.querySelectorAll('[data-field="' + name + '"]')) el.textContent = text;
  }

  function show(box, doc) {
    // A poll's answer can come after the end that /api/events already showed
    // (console.js): a session that has ended never runs again, so a live
    // state that arrives after the end is stale.
    if (box.dataset.status && !LIVE.includes(box.dataset.status) && LIVE.includes(doc.status)) return;
    const p = doc.progress || {};
    const percent = doc.status === "done" ? 1 : (p.percent_done || 0);
    const bar = box.querySelector("progress");
    if (bar) { bar.max = 1; bar.value = percent; }
    setField(box, "percent", Math.floor(percent * 100) + " %");
    setField(box, "status", doc.status);
    box.dataset.status = doc.status;
    if (p.total_files !== undefined) setField(box, "files", (p.files_done || 0) + " of " + p.total_files + " files");
    if (p.total_bytes !== undefined) setField(box, "bytes", window.sr.size(p.bytes_done || 0) + " of " + window.sr.size(p.total_bytes));
    setField(box, "eta", LIVE.includes(doc.status) && p.seconds_remaining !== null && p.seconds_remaining !== undefined
      ? window.sr.duration(p.seconds_remaining) + " left" : "");
    setField(box, "error", doc.error || "");
    const cancel = box.querySelector("[data-cancel-restore]");
    if (cancel) cancel.hidden = !LIVE.includes(doc.status);
  }

  async function poll(box, session) {
    while (box.dataset.liveSession === session) {
      let doc;
      try {
        doc = await window.sr.api("GET", "/api/restores/" + encodeURIComponent(session));
      } catch (e) {
        window.sr.flash(e.message);
        return;
      }
      show(box, doc);
      if (!LIVE.includes(box.dataset.status)) return;  // ended, by this answer or one shown before it
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  }

  function start(box, session) {
    box.dataset.liveSession = session;
    box.dataset.status = "pending";  // a new session: what the last one ended with no longer holds
    box.hidden = false;
    const url = new URL(window.location.href);
    url.searchParams.set("session", session);
    window.history.replaceState(null, "", url.toString());
    poll(box, session);
  }

  function setup() {
    const form = document.querySelector("form[data-restore]");
    const box = document.querySelector(".restore-progress[data-live-session]");
    if (!form || !box) return;
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const picked = Array.from(document.querySelectorAll("input[data-pick]:checked")).map((el) => el.value);
      const here = form.dataset.here;
      const paths = picked.length ? picked : (here ? [here] : []);
      const button = form.querySelector("[type=submit]");
      if (button) button.disabled = true;
      try {
        const answer = await window.sr.api("POST", "/api/points/" + encodeURIComponent(form.dataset.point) + "/restore",
          { paths: paths, target: form.elements.target.value });
        window.sr.flash("");
        start(box, answer.session);
      } catch (e) {
        window.sr.flash(e.message);
      } finally {
        if (button) button.disabled = false;
      }
    });
    box.addEventListener("click", async (event) => {
      if (!event.target.closest("[data-cancel-restore]")) return;
      try {
        await window.sr.api("POST", "/api/restores/" + encodeURIComponent(box.dataset.liveSession) + "/cancel");
      } catch (e) {
        window.sr.flash(e.message);
      }
    });
    if (box.dataset.liveSession) {
      if (LIVE.includes(box.dataset.status)) poll(box, box.dataset.liveSession);
      else { const c = box.querySelector("[data-cancel-restore]"); if (c) c.hidden = true; }
    }
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", setup);
  else setup();
})();
