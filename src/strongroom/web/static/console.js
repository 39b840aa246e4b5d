// strongroom console: the little script the server-rendered pages use.
//
// Behaviours are switched on by data- attributes, so pages carry no script of
// their own (the Content-Security-Policy allows none inline):
//   form[data-api="METHOD /api/..."]   sends its fields as JSON (see formBody)
//   button[data-api="METHOD /api/..."] sends data-body (JSON) when clicked
//     data-then="reload" | "go:/path/{field}" | "show"   what follows success
//     data-confirm="question"                            asks first
//   [data-live-job=ID]      follows job ID's progress and status (/api/events)
//   [data-live-session=ID]  follows a restore or DR session the same way
//   form[data-sign-in], button[data-sign-out]
// Every state-changing request carries the page's CSRF token (meta csrf-token).
"use strict";

(function () {
  const csrf = () => (document.querySelector('meta[name="csrf-token"]') || {}).content || "";

  function flash(message, kind) {
    const box = document.querySelector("[data-flash]");
    if (!box) return;
    box.textContent = message;
    box.className = "flash " + (kind || "error");
    box.hidden = !message;
  }

  async function api(method, url, body, extraHeaders) {
    const headers = Object.assign({ "Accept": "application/json" }, extraHeaders || {});
    // The sign-in form sends its own value (the page has no session token yet).
    if (method !== "GET" && !headers["X-CSRF-Token"]) headers["X-CSRF-Token"] = csrf();
    const init = { method: method, headers: headers, credentials: "same-origin" };
    if (body !== undefined && body !== null) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const response = await fetch(url, init);
    let data = null;
    const type = response.headers.get("content-type") || "";
    if (type.includes("application/json")) data = await response.json();
    if (!response.ok) {
      if (response.status === 401 && !url.startsWith("/api/session")) {
        window.location.assign("/login?next=" + encodeURIComponent(location.pathname + location.search));
      }
      let message = "request failed (" + response.status + ")";
      if (data && typeof data.error === "string") message = data.error;
      else if (data && Array.isArray(data.detail)) {
        message = data.detail.map((d) => (d.loc || []).slice(1).join(".") + ": " + d.msg).join("; ");
      } else if (data && typeof data.detail === "string") message = data.detail;
      throw new Error(message);
    }
    return data;
  }

  function setPath(target, name, value) {
    const parts = name.split(".");
    let here = target;
    for (let i = 0; i < parts.length - 1; i++) {
      here[parts[i]] = here[parts[i]] || {};
      here = here[parts[i]];
    }
    here[parts[parts.length - 1]] = value;
  }

  // A form's fields as JSON: data-type="lines" (one item per line), "number",
  // "json"; a checkbox is a boolean; an empty field marked data-optional is left
  // out; a name with dots makes nested objects (retention.keep_daily).
  function formBody(form) {
    const body = {};
    for (const el of form.elements) {
      if (!el.name || el.disabled) continue;
      if ((el.type === "radio") && !el.checked) continue;
      let value;
      const kind = el.dataset.type;
      if (el.type === "checkbox") value = el.checked;
      else if (el.tagName === "SELECT" && el.multiple) value = Array.from(el.selectedOptions).map((o) => o.value);
      else value = el.value;
      if (typeof value === "string") {
        if (value.trim() === "" && el.dataset.optional !== undefined) continue;
        if (kind === "lines") value = value.split(/\r?\n/).map((s) => s.trim()).filter((s) => s);
        else if (kind === "number") value = value.trim() === "" ? null : Number(value);
        else if (kind === "json") value = JSON.parse(value);
      }
      if (el.dataset.list !== undefined) {
        const list = name_get(body, el.name) || [];
        if (el.type !== "checkbox" || el.checked) list.push(el.value);
        setPath(body, el.name, list);
        continue;
      }
      setPath(body, el.name, value);
    }
    return body;
  }

  function name_get(target, name) {
    return name.split(".").reduce((o, k) => (o ? o[k] : undefined), target);
  }

  function fill(template, data) {
    return template.replace(/\{([a-z_]+)\}/g, (_, key) => encodeURIComponent(data && data[key] !== undefined ? data[key] : ""));
  }

  function after(el, data) {
    const then = el.dataset.then || "reload";
    if (el.dataset.done) flash(el.dataset.done, "ok");
    if (then === "reload") window.location.reload();
    else if (then.startsWith("go:")) window.location.assign(fill(then.slice(3), data));
    else if (then === "show") {
      const out = document.querySelector(el.dataset.result || "[data-result]");
      if (out) out.textContent = typeof data === "string" ? data : JSON.stringify(data, null, 2);
    }
    el.dispatchEvent(new CustomEvent("sr:done", { bubbles: true, detail: data }));
  }

  function split(spec) {
    const i = spec.indexOf(" ");
    return [spec.slice(0, i), spec.slice(i + 1)];
  }

  document.addEventListener("submit", async (event) => {
    const form = event.target;
    if (form.matches("[data-sign-in]")) {
      event.preventDefault();
      try {
        await api("POST", "/api/session", { password: form.elements.password.value },
          { "X-CSRF-Token": form.dataset.loginCsrf });
        window.location.assign(form.dataset.next || "/");
      } catch (e) {
        flash(e.message);
      }
      return;
    }
    if (!form.dataset.api) return;
    event.preventDefault();
    const [method, url] = split(form.dataset.api);
    const button = form.querySelector("[type=submit]");
    if (button) button.disabled = true;
    try {
      let target = url;
      const body = formBody(form);
      if (method === "GET") {
        target = url + (url.includes("?") ? "&" : "?") + new URLSearchParams(body).toString();
        after(form, await api("GET", target));
      } else {
        after(form, await api(method, fill(url, body), body));
      }
    } catch (e) {
      flash(e.message);
    } finally {
      if (button) button.disabled = false;
    }
  });

  document.addEventListener("click", async (event) => {
    const el = event.target.closest("button[data-api], button[data-sign-out]");
    if (!el) return;
    event.preventDefault();
    if (el.matches("[data-sign-out]")) {
      try { await api("DELETE", "/api/session"); } catch (e) { /* signed out anyway */ }
      window.location.assign("/login");
      return;
    }
    if (el.dataset.confirm && !window.confirm(el.dataset.confirm)) return;
    const [method, url] = split(el.dataset.api);
    el.disabled = true;
    try {
      after(el, await api(method, url, el.dataset.body ? JSON.parse(el.dataset.body) : undefined));
    } catch (e) {
      flash(e.message);
    } finally {
      el.disabled = false;
    }
  });

  // ---- live progress -------------------------------------------------------

  function size(n) {
    if (n === undefined || n === null) return "–";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (Math.abs(n) >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return (i === 0 ? n.toFixed(0) : n.toFixed(1)) + " " + units[i];
  }

  function duration(s) {
    if (s === undefined || s === null) return "–";
    s = Math.round(s);
    if (s < 60) return s + " s";
    if (s < 3600) return Math.floor(s / 60) + " min " + (s % 60) + " s";
    return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
  }

  function setField(box, name, text) {
    for (const el of box.querySelectorAll('[data-field="' + name + '"]')) el.textContent = text;
  }

  // What a status event says, on the element that follows it.
  function showProgress(box, p) {
    let percent = p.percent_done;
    if (percent === undefined && p.total_bytes) percent = (p.bytes_done || 0) / p.total_bytes;
    if (percent !== undefined) {
      const bar = box.querySelector("progress");
      if (bar) { bar.max = 1; bar.value = percent; }
      setField(box, "percent", Math.floor(percent * 100) + " %");
    }
    // A command's or a database's output has no size before its end: it counts bytes_read.
    const streamed = !p.total_bytes && p.bytes_read !== undefined;
    if (p.total_files !== undefined && !streamed) setField(box, "files", (p.files_done || 0) + " of " + p.total_files + " files");
    if (streamed) setField(box, "bytes", size(p.bytes_read) + " read");
    else if (p.total_bytes !== undefined) setField(box, "bytes", size(p.bytes_done || 0) + " of " + size(p.total_bytes));
    const elapsed = p.seconds_elapsed;
    if (elapsed) setField(box, "rate", size(Math.max(p.bytes_done || 0, p.bytes_read || 0) / elapsed) + "/s");
    setField(box, "eta", p.seconds_remaining !== undefined ? duration(p.seconds_remaining) + " left" : "");
  }

  const ENDED = ["succeeded", "failed", "cancelled", "done", "pass", "fail", "pass-with-warnings"];

  function showStatus(box, status, error) {
    setField(box, "status", status);
    for (const el of box.querySelectorAll('.status[data-field="status"]')) el.className = "status " + status;
    box.dataset.status = status;
    if (error) setField(box, "error", error);
    if (ENDED.includes(status)) {
      for (const el of box.querySelectorAll("[data-cancel-restore]")) el.hidden = true;  // nothing left to cancel
      if (status === "succeeded" || status === "done") {
        const bar = box.querySelector("progress");
        if (bar) { bar.max = 1; bar.value = 1; }
        setField(box, "percent", "100 %");
      }
      if (box.dataset.reloadOnDone !== undefined) {
        // Once per job and page: a page rendered after the end must not reload for ever.
        const key = "sr-reloaded:" + location.pathname + ":" + (box.dataset.liveJob || box.dataset.liveSession);
        let seen = null;
        try { seen = sessionStorage.getItem(key); } catch (e) { /* storage off: reload anyway */ }
        if (!seen) {
          try { sessionStorage.setItem(key, "1"); } catch (e) { /* ignore */ }
          setTimeout(() => window.location.reload(), 300);
        }
      }
    }
  }

  function follow() {
    const boxes = document.querySelectorAll("[data-live-job], [data-live-session], [data-live-jobs]");
    if (!boxes.length || !window.EventSource) return;
    const source = new EventSource("/api/events");
    // A job that ended between the page's rendering and the stream's opening
    // sends no event any more: ask for its state once the stream is open.
    source.onopen = () => {
      for (const box of boxes) {
        if (!box.dataset.liveJob) continue;
        api("GET", "/api/jobs/" + encodeURIComponent(box.dataset.liveJob)).then((job) => {
          // The stream may have shown the end while this was asked: an answer after it is stale.
          if (!job || ENDED.includes(box.dataset.status)) return;
          if (job.total_bytes !== undefined && job.total_bytes !== null) showProgress(box, job);
          if (job.status && box.dataset.status !== job.status) showStatus(box, job.status, job.error_plain || job.error);
        }).catch(() => { /* the stream's events still come */ });
      }
    };
    source.onmessage = (message) => {
      let event;
      try { event = JSON.parse(message.data); } catch (e) { return; }
      for (const box of boxes) {
        if (box.dataset.liveJobs !== undefined && event.type === "job") {
          box.dispatchEvent(new CustomEvent("sr:job", { detail: event }));
          if (box.dataset.reloadOnChange !== undefined) setTimeout(() => window.location.reload(), 300);
        }
        // A job or session that has ended never runs again: a progress event
        // that arrives after its end (events come from several threads) is stale.
        if (ENDED.includes(box.dataset.status) && (event.type === "progress" || event.type === "session")) continue;
        if (event.type === "progress" && String(event.job) === box.dataset.liveJob) {
          const p = event.event || {};
          if ((p.message_type || p.type) === "status") showProgress(box, p);
          // A page rendered while the job was queued: its progress says it runs now.
          if (!box.dataset.status || box.dataset.status === "queued") {
            setField(box, "status", "running");
            box.dataset.status = "running";
          }
        }
        if (event.type === "job" && String(event.job) === box.dataset.liveJob) showStatus(box, event.status, event.error);
        if (event.type === "session" && event.session === box.dataset.liveSession) {
          if (event.progress) showProgress(box, event.progress);
          if (event.status) showStatus(box, event.status, event.error);
        }
      }
    };
  }

  window.sr = { api: api, flash: flash, formBody: formBody, size: size, duration: duration };
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", follow);
  else follow();
})();
