// modelyard dashboard scripts: a job page's live progress and the overview's redraws (server-sent
// events), model uploads with a progress bar, and colour pickers that fill a search's colour field. No
// framework; htmx does the rest.
"use strict";

function followJob(section) {
  const source = new EventSource(section.dataset.stream);
  const set = (name, text) => { const el = section.querySelector(`[data-field="${name}"]`); if (el) el.textContent = text; };
  const show = (message) => {
    const job = JSON.parse(message.data);
    const p = job.progress;
    const bar = section.querySelector('[role="progressbar"]');
    bar.setAttribute("aria-valuenow", (p.fraction * 100).toFixed(1));
    bar.firstElementChild.style.width = `${(p.fraction * 100).toFixed(1)}%`;
    set("rows_done", p.rows_done); set("total_rows", p.total_rows); set("rows_failed", p.rows_failed);
    set("percent", (p.fraction * 100).toFixed(1)); set("chunks_done", p.chunks_done); set("chunk_count", p.chunk_count);
    set("rate", p.rows_per_second ? `${Math.round(p.rows_per_second)} rows/s` : "–");
    set("eta", p.eta_seconds == null ? "–" : `${p.eta_seconds.toFixed(1)} s`);
    const state = document.querySelector("#job-state .badge");
    if (state) { state.textContent = job.state; state.className = `badge state-${job.state}`; }
  };
  for (const name of ["queued", "started", "progress"]) source.addEventListener(name, show);
  const end = () => { source.close(); window.location.reload(); };
  source.addEventListener("finished", end);
  source.addEventListener("deleted", end);
  source.onerror = () => source.close();
}

function redrawOnChanges(panel) {
  // the server says when jobs or pipelines changed; htmx redraws the panel, at most once a second
  const source = new EventSource(panel.dataset.stream);
  let waiting = false;
  source.addEventListener("changed", () => {
    if (waiting) return;
    waiting = true;
    setTimeout(() => { waiting = false; htmx.trigger(panel, "changed"); }, 1000);
  });
}

function uploadVersion(form) {
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const bar = form.querySelector('[role="progressbar"]');
    const status = form.querySelector(".status");
    const request = new XMLHttpRequest();
    request.open("POST", form.dataset.action);
    request.setRequestHeader("X-CSRF-Token", form.dataset.csrf);
    bar.hidden = false;
    request.upload.onprogress = (e) => {
      if (!e.lengthComputable) return;
      const pct = (100 * e.loaded / e.total).toFixed(0);
      bar.setAttribute("aria-valuenow", pct);
      bar.firstElementChild.style.width = `${pct}%`;
      status.textContent = `uploading… ${pct}%`;
    };
    request.onload = () => {
      if (request.status === 201) { status.textContent = "uploaded"; window.location.reload(); return; }
      let detail = request.statusText;
      try { const body = JSON.parse(request.responseText); detail = body.detail || body.error || detail; } catch (e) { /* not JSON */ }
      status.textContent = `refused (${request.status}): ${detail}`;
      status.className = "status error";
    };
    request.onerror = () => { status.textContent = "the upload failed: network error"; status.className = "status error"; };
    request.send(new FormData(form));
  });
}

function fillFromPicker(picker) {
  const target = document.getElementById(picker.dataset.fills);
  if (target) picker.addEventListener("input", () => { target.value = picker.value; });
}

document.addEventListener("DOMContentLoaded", () => {
  for (const picker of document.querySelectorAll("input[type=color][data-fills]")) fillFromPicker(picker);
  const live = document.querySelector("#overview-live[data-stream]");
  if (live) redrawOnChanges(live);
  const progress = document.querySelector("#progress[data-stream]");
  if (progress) followJob(progress);
  const upload = document.querySelector("#upload");
  if (upload) uploadVersion(upload);
});
