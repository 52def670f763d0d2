"use strict";
// The worklist: films answered needs_roi (newest first), and the answers to recent marks.
function link(row, id, text) {
  const a = document.createElement("a");
  a.href = "/scans/" + id;
  a.textContent = text;
  cell(row, "").appendChild(a);
}

async function load() {
  await startSession();
  const waiting = await (await api("/api/scans?status=needs_roi&limit=100")).json();
  const body = document.querySelector("#waiting tbody");
  for (const scan of waiting.scans) {
    const row = body.insertRow();
    cell(row, scan.input);
    cell(row, when(scan.received));
    cell(row, scan.answers ? "marked before" : "no region given");
    link(row, scan.id, "Mark regions");
  }
  document.getElementById("empty").hidden = waiting.scans.length > 0;
  const recent = await (await api("/api/scans?status=classified&limit=50")).json();
  const marked = document.querySelector("#marked tbody");
  for (const scan of recent.scans.filter((s) => s.answers)) {
    const row = marked.insertRow();
    cell(row, scan.input);
    cell(row, scan.reader || "");
    cell(row, scan.label + " p=" + scan.probability.toFixed(3));
    link(row, scan.answers, "Open film");
  }
}
load();
