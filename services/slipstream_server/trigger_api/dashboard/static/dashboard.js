// Slipstream dashboard: live run statuses over realtime websockets (a public access token that
// the server minted for this page; never the secret key), auto-submitting selects, the cron
// preview, confirmations and copying a key.
"use strict";

function followRuns(scope) {
  const token = scope.dataset.token;
  const base = scope.dataset.realtime;
  const finals = new Set((scope.dataset.final || "").split(","));
  scope.querySelectorAll("[data-run]").forEach((row) => {
    if (finals.has(row.dataset.status)) return;
    const id = row.dataset.run;
    const socket = new WebSocket(`${base}/realtime/v1/runs/${encodeURIComponent(id)}?token=${encodeURIComponent(token)}`);
    socket.onmessage = (event) => {
      const message = JSON.parse(event.data);
      const run = message.run;
      if (!run) return;
      const previous = row.dataset.status;
      showStatus(row, run.status);
      const metadata = document.getElementById("metadata");
      if (metadata && row.hasAttribute("data-reload-when-final") && run.metadata !== undefined) {
        metadata.textContent = JSON.stringify(run.metadata, null, 2);
      }
      if (finals.has(run.status)) {
        socket.close();
        // The run page shows the output, the error and the logs: read them once it is final.
        if (row.hasAttribute("data-reload-when-final") && previous !== run.status) window.location.reload();
      }
    };
  });
}

function showStatus(row, status) {
  row.dataset.status = status;
  row.querySelectorAll("[data-field=status]").forEach((el) => {
    el.textContent = status;
    el.className = `status status-${status}`;
  });
}

// Whether a run the page does not show could belong in it (the server has the last word).
function mayMatch(run, filters) {
  if (filters.status && run.status !== filters.status) return false;
  if (filters.task && run.taskIdentifier !== filters.task) return false;
  if (filters.tag && !(run.tags || []).includes(filters.tag)) return false;
  if (filters.version && run.version !== filters.version) return false;
  if (filters.queue && run.queue !== filters.queue) return false;
  if (filters.batch && run.batchId !== filters.batch) return false;
  return true;
}

// The first page of the runs list: one socket on the environment's feed. A row on the page
// changes in place; a run that may belong on the page reloads the list (at most once a second).
function followFeed(scope) {
  const base = scope.dataset.realtime;
  const token = scope.dataset.token;
  const filters = JSON.parse(scope.dataset.filters || "{}");
  let timer = null;
  const reload = () => {
    if (timer) return;
    timer = setTimeout(async () => {
      try {
        const answer = await fetch(location.href, {credentials: "same-origin", cache: "no-store"});
        if (answer.ok) {
          const page = new DOMParser().parseFromString(await answer.text(), "text/html");
          const fresh = page.getElementById("runs-region");
          const region = document.getElementById("runs-region");
          if (fresh && region) region.replaceChildren(...fresh.childNodes);
        }
      } finally {
        timer = null;
      }
    }, 1000);
  };
  const connect = (since) => {
    const query = new URLSearchParams({token});
    if (since) query.set("since", since);
    const socket = new WebSocket(`${base}/realtime/v1/runs?${query}`);
    let newest = since;
    socket.onmessage = (event) => {
      const run = JSON.parse(event.data).run;
      if (!run) return;
      if (!newest || run.updatedAt > newest) newest = run.updatedAt;
      const row = document.querySelector(`#runs-region [data-run="${CSS.escape(run.id)}"]`);
      if (row) showStatus(row, run.status);
      else if (mayMatch(run, filters)) reload();
    };
    // A dropped feed comes back asking for what was triggered meanwhile; the list is read again.
    socket.onclose = (event) => {
      if (event.code >= 4000) return;  // refused (an expired token): a reload signs the page again
      setTimeout(() => { connect(newest); reload(); }, 2000);
    };
  };
  connect(scope.dataset.since);  // what was triggered since the server read the list comes first
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("[data-live]").forEach(followRuns);
  document.querySelectorAll("[data-feed]").forEach(followFeed);
  document.querySelectorAll("select[data-autosubmit]").forEach((select) => {
    select.addEventListener("change", () => select.form.submit());
  });
  document.querySelectorAll("[data-confirm]").forEach((button) => {
    button.addEventListener("click", (event) => {
      if (!window.confirm(button.dataset.confirm)) event.preventDefault();
    });
  });
  document.querySelectorAll("[data-copy]").forEach((button) => {
    button.addEventListener("click", async () => {
      // The key is read on the click only (a same-origin POST with the CSRF token), never kept in the page.
      const answer = await fetch(`${location.pathname.replace(/\/environments.*$/, "")}/environments/${button.dataset.copy}/key`,
                                 {method: "POST", credentials: "same-origin", cache: "no-store",
                                  body: new URLSearchParams({csrf: button.dataset.csrf})});
      if (answer.ok && navigator.clipboard) {
        await navigator.clipboard.writeText(await answer.text());
        button.textContent = "Copied";
      }
    });
  });
  const cronInput = document.querySelector("[data-cron-preview]");
  if (cronInput) {
    const zone = document.getElementById("timezone");
    const preview = document.getElementById("cron-preview");
    let timer = null;
    const update = () => {
      clearTimeout(timer);
      timer = setTimeout(async () => {
        if (!cronInput.value.trim()) { preview.textContent = ""; return; }
        const query = new URLSearchParams({cron: cronInput.value, timezone: zone.value || "UTC"});
        const answer = await fetch(`${cronInput.dataset.cronPreview}?${query}`, {credentials: "same-origin"});
        const body = await answer.json();
        preview.textContent = body.error ? body.error : `${body.description}; next: ${body.next.join(", ")}`;
      }, 250);
    };
    cronInput.addEventListener("input", update);
    zone.addEventListener("input", update);
  }
});
