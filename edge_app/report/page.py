"""The results page: ``results/index.html``, a self-contained static page (no server, no network, no script or style
from elsewhere) that a clinic opens from a shared folder or a USB stick.

The audit log (``results.jsonl``, one line per scan, append-only) is cut into pages of `PAGE_SIZE` scans in arrival
order. Every page is ``pages/page-NNNN.html``; ``index.html`` is the newest page again at the top of the folder.
After a scan only the newest page is rendered (its scans' result files read again), and a page that just filled is
left as it is; of the audit log, only the lines appended since the last update are read (`AuditTail`): regenerating
costs the same with 50 results or 500,000. Each page is written atomically; links are
relative, so the folder can be copied anywhere.
"""

from __future__ import annotations

import html
import json
import logging
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge_app.fsutil import atomic_write, is_cached, sha256_of, write_cache
from edge_app.model import ModelIdentity
from edge_app.overlay import THUMB_WIDTH, heat_legend, thumbnail_jpeg
from edge_app.service.analyse import MARKED_BY_DEVICE
from edge_app.service.audit import AuditLog
from edge_app.service.lifecycle import thumbnail_name
from edge_app.service.writer import AUDIT_JSONL

log = logging.getLogger(__name__)
PAGE_SIZE = 50
INDEX = "index.html"
PAGES = "pages"
CARD = "model_card.html"
CATCH_UP_PAGES = 20  # older pages one update may write (a folder upgraded with thousands of results)
FINAL_MARK = '<meta name="mammo-edge-page" content="final">'
NOTICE = "Research use only, not for clinical use. Not a medical device; do not use for diagnosis."
STATUS_TEXT = {"classified": "Classified", "needs_roi": "Needs a region", "rejected": "Refused"}
STATUS_MARK = {"classified": "\u2713", "needs_roi": "\u26a0", "rejected": "\u2715"}  # never colour alone


@dataclass(frozen=True)
class PageContext:
    """What every page says about the model: who answered, and what its threshold means."""

    identity: ModelIdentity
    operating_point: str  # e.g. "on the test split: sensitivity 0.95, specificity 0.81"
    card: Path | None  # the bundle's model_card.html, copied beside the pages (None: the bundle has none)
    heat_scale: float | None = None  # the bundle's fixed heat scale (the overlays' legend says the same)


def operating_point(metrics: dict[str, Any]) -> str:
    """The threshold's meaning from the manifest's test metrics (empty when the bundle records none)."""
    test = metrics.get("test") or {}
    if "sensitivity" not in test or "specificity" not in test:
        return ""
    return (
        f"on the held-out test split ({test.get('n_images', '?')} images) this threshold gave sensitivity "
        f"{test['sensitivity']:.2f} and specificity {test['specificity']:.2f}"
    )


def read_audit(results: Path) -> list[dict[str, Any]]:
    """Every audit line of every segment, oldest first (a line cut short by a crash is skipped: the writer writes it
    again)."""
    entries = []
    for line in AuditLog(results / AUDIT_JSONL).lines():
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return entries


class AuditTail:
    """How many entries the audit log holds and the newest `keep` of them, kept current by reading only what was
    appended since the last look: the whole log is read again only when the file was rotated or cut (a torn line
    dropped). One page update then costs the same with 50 results or 500,000."""

    def __init__(self, results: Path, keep: int) -> None:
        self.log = AuditLog(results / AUDIT_JSONL)
        self.count = 0
        self.recent: deque[dict[str, Any]] = deque(maxlen=keep)
        self._inode: int | None = None  # never looked: the first look reads every segment there is
        self._offset = 0

    def refresh(self) -> None:
        try:
            status = self.log.path.stat()
        except FileNotFoundError:
            status = None
        inode = -1 if status is None else status.st_ino
        if inode != self._inode or (status is not None and status.st_size < self._offset):
            self.count, self._offset, self._inode = 0, 0, inode
            self.recent.clear()
            for segment in self.log.segments()[:-1] if status is not None else self.log.segments():
                self._read(segment, 0)
        if status is not None:
            self._offset = self._read(self.log.path, self._offset)

    def entries(self, start: int, stop: int) -> list[dict[str, Any]] | None:
        """Entries `start` to `stop` (in log order) if they are among the newest kept, else None."""
        first = self.count - len(self.recent)
        if start < first:
            return None
        return list(self.recent)[start - first : stop - first]

    def _read(self, path: Path, offset: int) -> int:
        """Take the whole lines of `path` after `offset` (a line still being written waits); the new offset."""
        with path.open("rb") as handle:
            handle.seek(offset)
            data = handle.read()
        whole = data[: data.rfind(b"\n") + 1]
        for line in whole.decode("utf-8", errors="replace").splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue  # cut short by a crash: the writer writes it again
            self.count += 1
            self.recent.append(entry)
        return offset + len(whole)


class ResultsPage:
    def __init__(self, results: Path, context: PageContext, page_size: int = PAGE_SIZE) -> None:
        self.results = results
        self.context = context
        self.page_size = page_size
        self._tail = AuditTail(results, 2 * page_size)
        self._missing: list[int] | None = None  # older pages not yet written, found at the first update

    def update(self) -> None:
        """Render the newest page and the index, finish the page that just filled, and write up to
        `CATCH_UP_PAGES` older pages still missing (a folder that had results before it had pages), newest first:
        the cost of one update stays bounded however many results the folder holds."""
        self._tail.refresh()
        size, count = self.page_size, max(1, -(-self._tail.count // self.page_size))
        pages = self.results / PAGES
        pages.mkdir(parents=True, exist_ok=True)
        if self._missing is None:
            self._missing = [number for number in range(count - 1, 0, -1) if not (pages / _page_name(number)).exists()]
        just_filled = pages / _page_name(count - 1)
        todo = self._missing[:CATCH_UP_PAGES]
        del self._missing[:CATCH_UP_PAGES]
        if count > 1 and just_filled.exists() and FINAL_MARK not in just_filled.read_text(encoding="utf-8"):
            todo.insert(0, count - 1)
        everything: list[dict[str, Any]] | None = None
        for number in todo:
            chunk = self._tail.entries((number - 1) * size, number * size)
            if chunk is None:  # an old page, caught up once: the whole log is read for it
                everything = read_audit(self.results) if everything is None else everything
                chunk = everything[(number - 1) * size : number * size]
            page = self._render(chunk, number, count, "../", thumbnails=number == count - 1)
            atomic_write(pages / _page_name(number), page.encode())
        newest = self._tail.entries((count - 1) * size, count * size) or []
        atomic_write(pages / _page_name(count), self._render(newest, count, count, "../").encode())
        atomic_write(self.results / INDEX, self._render(newest, count, count, "").encode())
        self._copy_card()

    def _copy_card(self) -> None:
        card = self.context.card
        if card is None or not card.is_file():
            return
        target = self.results / CARD
        if not target.exists() or sha256_of(target) != sha256_of(card):
            atomic_write(target, card.read_bytes())

    def _render(
        self, entries: Sequence[dict[str, Any]], number: int, count: int, root: str, thumbnails: bool = True
    ) -> str:
        """Page `number` of `count`; every page but the newest is final: its scans and links never change. Without
        `thumbnails`, a row without one shows its overlay itself (catching up must not decode thousands)."""
        rows = "\n".join(self._row(entry, root, thumbnails) for entry in reversed(entries))
        identity = self.context.identity
        card_link = f' &middot; <a href="{root}{CARD}">model card</a>' if self.context.card is not None else ""
        meaning = f" ({html.escape(self.context.operating_point)})" if self.context.operating_point else ""
        return _PAGE.format(
            title=f"mammo-edge results, page {number}" + (" (newest)" if number == count else ""),
            final=FINAL_MARK if number < count else "",
            notice=html.escape(NOTICE),
            model=html.escape(f"{identity.name} {identity.version}"),
            variant=html.escape(f"{identity.variant}, {identity.runtime}"),
            sha=html.escape(identity.sha256),
            threshold=f"{identity.threshold:.3f}",
            target=f"{identity.target_sensitivity:.2f}",
            meaning=meaning,
            heat=html.escape(heat_legend(self.context.heat_scale)),
            card=card_link,
            navigation=_navigation(number, count, root),
            shown=len(entries),
            rows=rows or '<tr><td colspan="5">No scans yet.</td></tr>',
            script=_SCRIPT,
            style=_STYLE,
            policy=_POLICY,
        )

    def _row(self, entry: dict[str, Any], root: str, thumbnails: bool) -> str:
        status = str(entry.get("status") or "rejected")
        name = html.escape(str(entry.get("input", "")))
        when = html.escape(str(entry.get("time", ""))[:19].replace("T", " "))
        document = self._result(entry)
        regions = document.get("regions", []) if document else []
        decisions = " ".join(sorted({str(region["decision"]) for region in regions}))
        picture = self._thumbnail(document, root, thumbnails) if document else ""
        links = self._links(entry, document, root)
        return (
            f'<tr data-status="{html.escape(status)}" data-decisions="{html.escape(decisions)}">'
            f"<td>{picture}</td><td>{name}<br><small>{when} UTC</small></td>"
            f'<td><span class="status {html.escape(status)}">{STATUS_MARK.get(status, "?")} '
            f"{STATUS_TEXT.get(status, html.escape(status))}</span>{self._status_detail(entry, document)}</td>"
            f"<td>{_regions_table(regions)}</td><td>{links}</td></tr>"
        )

    def _result(self, entry: dict[str, Any]) -> dict[str, Any] | None:
        name = entry.get("result")
        if entry.get("status") == "rejected" or not name:
            return None
        try:
            loaded: dict[str, Any] = json.loads((self.results / str(name)).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return None  # written after this line of the log, or removed by hand: the row says what the log says
        return loaded

    def _status_detail(self, entry: dict[str, Any], document: dict[str, Any] | None) -> str:
        if entry.get("status") == "rejected":
            stage, reason = html.escape(str(entry.get("stage"))), html.escape(str(entry.get("reason")))
            return f'<br><small class="reason">{stage}: {reason}</small>'
        if document and document.get("reason"):
            reason = f'<br><small class="reason">{html.escape(str(document["reason"]))}</small>'
            return reason + _suggestions(document)
        if entry.get("duplicate_of"):
            return f"<br><small>same content as {html.escape(str(entry['duplicate_of']))}</small>"
        return ""

    def _thumbnail(self, document: dict[str, Any], root: str, make: bool) -> str:
        overlay = document.get("heatmap")
        if not overlay or not (self.results / str(overlay)).is_file():
            return '<span class="nothumb">no overlay</span>'
        thumb = thumbnail_name(str(overlay))  # the write stage makes it; a result written before it did, here
        if make and not is_cached(self.results / thumb):
            _write_thumbnail(self.results / str(overlay), self.results / thumb)
        source = thumb if is_cached(self.results / thumb) else str(overlay)
        regions = ", ".join(
            f"region {region['label']} p={region['probability']:.3f} {region['decision']}"
            for region in document.get("regions", [])
        )
        alt = html.escape(f"Overlay of {document.get('input')}: {regions or 'no regions'}")
        return (
            f'<a href="{root}{html.escape(str(overlay))}"><img src="{root}{html.escape(source)}" '
            f'alt="{alt}" width="{THUMB_WIDTH}"></a>'
        )

    def _links(self, entry: dict[str, Any], document: dict[str, Any] | None, root: str) -> str:
        links = []
        if document is not None:
            result = str(entry["result"])
            if document.get("heatmap"):
                links.append((str(document["heatmap"]), "overlay and region zooms"))
            links.append((result, "result JSON"))
            stem = result.removesuffix(".json")
            for suffix, text in ((".sr.dcm", "DICOM report"), (".sc.dcm", "DICOM capture")):
                if (self.results / "dicom" / f"{stem}{suffix}").exists():
                    links.append((f"dicom/{stem}{suffix}", text))
        return "<br>".join(f'<a href="{root}{html.escape(href)}">{text}</a>' for href, text in links)


def _suggestions(document: dict[str, Any]) -> str:
    """Where the detector proposes the reader look on a film left needs_roi, or why it proposes nothing."""
    found = document.get("suggestions") or []
    if found:
        places = ", ".join(
            f"{html.escape(str(item['label']))} at ({item['x']:.0f}, {item['y']:.0f}) score {item['score']:.2f}"
            for item in found
        )
        return f'<br><small class="suggestions">suggested by the device: {places}</small>'
    if document.get("suggestions_reason"):
        return (
            f'<br><small class="suggestions">no suggestions: {html.escape(str(document["suggestions_reason"]))}</small>'
        )
    return ""


def _regions_table(regions: Sequence[dict[str, Any]]) -> str:
    if not regions:
        return ""
    rows = "".join(
        f'<tr class="{html.escape(str(region["decision"]))}"><td>{html.escape(str(region["label"]))}'
        f"{' (proposed by the device)' if region.get('marked_by') == MARKED_BY_DEVICE else ''}</td>"
        f'<td class="p">{region["probability"]:.3f}</td>'
        f"<td>{_decision(str(region['decision']))}</td></tr>"
        for region in regions
    )
    note = ""
    if any(region.get("marked_by") == MARKED_BY_DEVICE for region in regions):
        note = '<small class="suggestions">a mass the device did not propose was not assessed</small>'
    return f'<table class="regions"><tr><th>region</th><th>p(malignant)</th><th>decision</th></tr>{rows}</table>{note}'


def _decision(decision: str) -> str:
    mark = "\u25b2" if decision == "malignant" else "\u25cb"
    return f'<span class="decision {html.escape(decision)}">{mark} {html.escape(decision)}</span>'


def _page_name(number: int) -> str:
    return f"page-{number:04d}.html"


def _navigation(number: int, count: int, root: str) -> str:
    pages = f"{root}{PAGES}/" if root == "" else ""
    parts = []
    if number < count:
        parts.append(f'<a href="{pages}{_page_name(number + 1)}" rel="prev">newer</a>')
    parts.append(f"page {number}" + (" (newest)" if number == count else ""))
    if number > 1:
        parts.append(f'<a href="{pages}{_page_name(number - 1)}" rel="next">older</a>')
    if root:
        parts.append(f'<a href="{root}{INDEX}">newest</a>')
    return " &middot; ".join(parts)


def _write_thumbnail(overlay: Path, thumb: Path) -> None:
    image = cv2.imread(str(overlay), cv2.IMREAD_COLOR)
    if image is None:
        log.warning("overlay %s could not be read for its thumbnail", overlay.name)
        return
    thumb.parent.mkdir(parents=True, exist_ok=True)
    write_cache(thumb, thumbnail_jpeg(np.asarray(image, np.uint8)))


_STYLE = """
body{font-family:system-ui,sans-serif;margin:1rem;color:#111;background:#fff}
.notice{border:3px solid #b00;padding:.5rem;font-weight:bold}
table.scans{border-collapse:collapse;width:100%}
table.scans td,table.scans th{border-bottom:1px solid #ccc;padding:.4rem;vertical-align:top;text-align:left}
.status{font-weight:bold;white-space:nowrap}
.status.classified{color:#05602a}.status.needs_roi{color:#7a4a00}.status.rejected{color:#a00}
.decision.malignant{font-weight:bold;color:#a00}.decision.benign{color:#05602a}
table.regions td,table.regions th{padding:0 .5rem 0 0;border:0}
.p{font-variant-numeric:tabular-nums}
.reason{color:#333}
fieldset{display:inline-block;margin:.3rem .5rem .5rem 0}
"""

_SCRIPT = """
const boxes = Array.from(document.querySelectorAll('input[data-filter]'));
function apply() {
  const on = (kind) => boxes.filter(b => b.dataset.filter === kind && b.checked).map(b => b.value);
  const statuses = on('status'), decisions = on('decision');
  let shown = 0;
  for (const row of document.querySelectorAll('tr[data-status]')) {
    const status = row.dataset.status;
    const rowDecisions = row.dataset.decisions ? row.dataset.decisions.split(' ') : [];
    const decided = status !== 'classified' || rowDecisions.some(d => decisions.includes(d));
    row.hidden = !(statuses.includes(status) && decided);
    if (!row.hidden) shown++;
  }
  document.getElementById('shown').textContent = shown;
}
boxes.forEach(b => b.addEventListener('change', apply));
apply();
"""

_POLICY = "default-src 'none'; img-src 'self' file:; style-src 'unsafe-inline'; script-src 'unsafe-inline'"
_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{policy}">
<meta name="viewport" content="width=device-width, initial-scale=1">{final}
<title>{title}</title><style>{style}</style></head>
<body>
<p class="notice" role="note">{notice}</p>
<h1>Scans, newest first</h1>
<p>Model <strong>{model}</strong> ({variant}), model file sha256 <code>{sha}</code>{card}.<br>
A region is called malignant when its probability is at least <strong>{threshold}</strong>, the threshold chosen for
a sensitivity of {target}{meaning}. The overlays' heat is Grad-CAM evidence for malignancy: none to full colour at
{heat}.</p>
<form aria-label="filters">
<fieldset><legend>Status</legend>
<label><input type="checkbox" data-filter="status" value="classified" checked> classified</label>
<label><input type="checkbox" data-filter="status" value="needs_roi" checked> needs a region</label>
<label><input type="checkbox" data-filter="status" value="rejected" checked> refused</label></fieldset>
<fieldset><legend>Decision (classified scans)</legend>
<label><input type="checkbox" data-filter="decision" value="malignant" checked> malignant</label>
<label><input type="checkbox" data-filter="decision" value="benign" checked> benign</label></fieldset>
</form>
<nav>{navigation}</nav>
<p><span id="shown">{shown}</span> of {shown} scans on this page shown.</p>
<table class="scans">
<thead><tr><th>overlay</th><th>scan</th><th>status</th><th>regions</th><th>files</th></tr></thead>
<tbody>
{rows}
</tbody></table>
<nav>{navigation}</nav>
<script>{script}</script>
</body></html>
"""
