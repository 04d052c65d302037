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
      row.dataset.status = run.status;
      row.querySelectorAll("[data-field=status]").forEach((el) => {
        el.textContent = run.status;
        el.className = `status status-${run.status}`;
      });
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

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("[data-live]").forEach(followRuns);
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
