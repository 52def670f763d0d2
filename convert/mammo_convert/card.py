"""The model card: ``model_card.html`` in every bundle, one self-contained page (plots embedded, nothing fetched) that
says what the model is for and what it is not, what it learned from and how the split was grouped, how well it did
per source with intervals, what its threshold means, how faithful each shipped file is to the float model, how fast it
ran on the reference machines, and its known limits. Every figure is read from the files beside it (the manifest,
the conversion report, the training run), never typed by hand.
"""

from __future__ import annotations

import base64
import csv
import html
import json
import math
from pathlib import Path
from typing import Any

from edge_app.fsutil import atomic_write
from edge_app.manifest import Manifest
from edge_app.report.page import CARD, NOTICE
from edge_app.scope import ScopeLimits

REFERENCES = Path(__file__).resolve().parents[2] / "benchmarks" / "reference"
PLOTS = (("roc_test.png", "ROC curve on the test split"), ("calibration_test.png", "Calibration on the test split"))
METRICS = (
    ("roc_auc", "ROC AUC"),
    ("sensitivity", "sensitivity"),
    ("specificity", "specificity"),
    ("ppv", "PPV"),
    ("npv", "NPV"),
    ("brier", "Brier score"),
    ("ece", "calibration error (ECE)"),
)


def write_model_card(bundle: Path, manifest: Manifest, report: dict[str, Any], run: Path) -> Path:
    """Write ``bundle/model_card.html`` from the manifest, the conversion report and the training run."""
    sections = [
        _intended_use(manifest),
        _training(manifest, run),
        _metrics(manifest),
        _plots(run),
        _operating_point(manifest),
        _fidelity(report),
        _detector(manifest),
        _latency(manifest),
        _limits(manifest),
    ]
    title = f"Model card: {manifest.name} {manifest.version}"
    page = _PAGE.format(title=html.escape(title), notice=html.escape(NOTICE), body="\n".join(sections))
    target = bundle / CARD
    atomic_write(target, page.encode())
    return target


def _intended_use(manifest: Manifest) -> str:
    scope = manifest.scope
    low, high = scope.patch_side_px
    sides = f"{low} px" if low == high else f"{low}-{high} px"
    return f"""<h2>Intended use</h2>
<p>Research on benign versus malignant <strong>breast masses</strong>: the model classifies a marked region of a
mammogram (a patch a few centimetres across, cut around the region by the bundle's crop rule: a square of
{scope.crop_scale:g} times the region's radius, at least {scope.crop_min_side} px) and shows where its evidence lies
(Grad-CAM). It is a {html.escape(manifest.architecture)} ({html.escape(", ".join(manifest.backbones))}) at
{manifest.preprocess.input_size} px, created {html.escape(manifest.created)}.</p>
<h2>Out of scope</h2>
<ul>
<li>Full-field mammograms without marked regions: the device answers them <em>needs a region</em> and never
classifies them (by default a scan without regions is classified whole only if it is a patch of
{ScopeLimits.resolve(scope).describe()}, like the training patches of {sides}).</li>
<li>Diagnosis, screening or triage of any patient; calcifications, architectural distortion and other findings
that are not masses; images that are not mammograms.</li>
</ul>"""


def _training(manifest: Manifest, run: Path) -> str:
    training = manifest.training
    counts = training.get("counts", {})
    rows = "".join(f"<tr><td>{html.escape(str(k))}</td><td>{v}</td></tr>" for k, v in counts.items())
    grouping = _grouping(run / "splits.csv")
    return f"""<h2>Training data and split</h2>
<p>Sources: {html.escape(", ".join(training.get("sources", [])) or "not recorded")}; ImageNet weights:
{html.escape(str(training.get("weights", "not recorded")))}; split file sha256
<code>{html.escape(str(training.get("split_sha256", "not recorded")))}</code>.</p>
<table><tr><th>split</th><th>images</th></tr>{rows}</table>
<p>{grouping}</p>"""


def _grouping(splits: Path) -> str:
    """How the split was grouped, read from the split file: a group is ``SOURCE/patient:ID`` (a patient) or
    ``SOURCE/ORIGINAL`` (an original mass with its augmented copies); every image of a group is in one split."""
    if not splits.is_file():
        return "The split file is not in the training run: its grouping cannot be shown."
    with splits.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    kinds = sorted({"patient" if "/patient:" in row["group"] else "original mass" for row in rows})
    groups = {split: len({row["group"] for row in rows if row["split"] == split}) for split in ("train", "val", "test")}
    kind = " or ".join(kinds)
    return (
        f"Grouped by <strong>{kind}</strong>: all images of one {kind}, augmented copies included, are in the same "
        f"split, so nothing of a test group was seen in training ({groups['train']} train, {groups['val']} "
        f"validation, {groups['test']} test groups)."
    )


def _metric_row(name: str, values: dict[str, Any]) -> str:
    auc_low, auc_high = values.get("roc_auc_ci", [None, None])
    cells = []
    for key, _ in METRICS:
        value = values.get(key)
        text = "-" if value is None else f"{value:.3f}"
        if key == "roc_auc" and auc_low is not None:
            text += f" ({auc_low:.3f}-{auc_high:.3f})"
        cells.append(f"<td>{text}</td>")
    groups, malignant = values.get("n_groups", "?"), values.get("n_malignant", "?")
    counts = f"{values.get('n_images', '?')} ({groups} groups, {malignant} malignant)"
    return f"<tr><td>{html.escape(name)}</td><td>{counts}</td>{''.join(cells)}</tr>"


def _metrics(manifest: Manifest) -> str:
    metrics = manifest.metrics
    header = "".join(f"<th>{label}</th>" for _, label in METRICS)
    rows = [_metric_row("all sources", metrics.get("test", {}))]
    rows += [_metric_row(source, values) for source, values in sorted(metrics.get("per_source", {}).items())]
    return f"""<h2>Performance on the held-out test split</h2>
<p>Float model, temperature-calibrated probabilities, at the bundle's threshold. AUC intervals are 95% bootstrap
intervals over groups.</p>
<table class="metrics"><tr><th>source</th><th>test images</th>{header}</tr>{"".join(rows)}</table>"""


def _plots(run: Path) -> str:
    figures = []
    for name, caption in PLOTS:
        path = run / name
        if path.is_file():
            data = base64.b64encode(path.read_bytes()).decode()
            figures.append(
                f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(caption)}" width="420">'
                f"<figcaption>{html.escape(caption)}</figcaption></figure>"
            )
    body = "".join(figures) or "<p>The training run holds no plots.</p>"
    return f"<h2>ROC and calibration</h2>{body}"


def _operating_point(manifest: Manifest) -> str:
    test = manifest.metrics.get("test", {})
    matrix = test.get("confusion_matrix")
    confusion = ""
    if matrix:
        (tn, fp), (fn, tp) = matrix
        confusion = f" On the test split: {tp} true and {fp} false positives, {tn} true and {fn} false negatives."
    sensitivity, specificity = test.get("sensitivity"), test.get("specificity")
    measured = (
        f" Test sensitivity {sensitivity:.3f}, specificity {specificity:.3f}."
        if sensitivity is not None and specificity is not None
        else ""
    )
    return f"""<h2>Threshold and operating point</h2>
<p>A region is called malignant at a calibrated probability of at least <strong>{manifest.threshold:.4f}</strong>
(temperature {manifest.temperature:.3f}), chosen on the validation split for a sensitivity of
{manifest.target_sensitivity:.2f}.{measured}{confusion}</p>
<p>{_heat(manifest)}</p>"""


def _heat(manifest: Manifest) -> str:
    if manifest.heat_scale is None:
        return "Heatmaps: each region's Grad-CAM is scaled to its own strongest evidence (no fixed scale was measured)."
    return (
        f"Heatmaps: Grad-CAM evidence for malignancy on one fixed scale, full colour at {manifest.heat_scale:.3f} "
        "logit (the 95th percentile of the strongest evidence per test image), the same for every region: little "
        "evidence shows as little heat."
    )


def _fidelity(report: dict[str, Any]) -> str:
    thresholds = report.get("thresholds", {})
    rows = []
    for variant, values in report.get("variants", {}).items():
        agreement_low, agreement_high = values.get("agreement_ci", [0, 0])
        pearson_low, pearson_high = values.get("heatmap_pearson_ci", [0, 0])
        rows.append(
            f"<tr><td>{html.escape(variant)}</td><td>{html.escape(str(values.get('status')))}</td>"
            f"<td>{values['agreement']:.4f} ({agreement_low:.4f}-{agreement_high:.4f})</td>"
            f"<td>{values['auc_drop']:.4f}</td><td>{values['max_abs_prob_diff']:.4f}</td>"
            f"<td>{values['heatmap_pearson']:.4f} ({pearson_low:.4f}-{pearson_high:.4f})</td>"
            f"<td>{values['size_bytes'] / 1e6:.1f}</td></tr>"
        )
    return f"""<h2>Fidelity of the shipped files to the float model</h2>
<p>Each file ran on {report.get("fidelity_images", "?")} images and was kept only if its decisions agree with the
float model's on at least {thresholds.get("min_agreement", "?")} of them, its AUC drops by at most
{thresholds.get("max_auc_drop", "?")} and its Grad-CAM correlates at least {thresholds.get("min_heatmap_pearson", "?")}
with the float one.</p>
<table><tr><th>variant</th><th>gate</th><th>decision agreement (95% CI)</th><th>AUC drop</th>
<th>max |&Delta;p|</th><th>heatmap Pearson (95% CI)</th><th>MB</th></tr>{"".join(rows)}</table>{_int8_recipe(report)}"""


def _int8_recipe(report: dict[str, Any]) -> str:
    recipe = report.get("variants", {}).get("int8", {}).get("int8_recipe")
    if recipe is None:
        return ""
    return (
        f"<p>int8: activation ranges by {html.escape(str(recipe['ranges']))}, bias correction "
        f"{html.escape(str(recipe['bias']))} (<code>mammo-convert --int8-ranges</code>, <code>--int8-bias</code>).</p>"
    )


def _detector(manifest: Manifest) -> str:
    """The bundle's mass detector: what it reads, the films it was trained on, its cross-validated FROC (the curve and
    the table, with the data they came from) and its conversion gate; or that the bundle has none."""
    spec = manifest.detector
    if spec is None:
        return """<h2>Mass detector</h2>
<p>This bundle has no detector: a film that comes without marked regions is answered <code>needs_roi</code> with no
suggestions.</p>"""
    height, width = spec.input.canvas
    reads = (
        f"<p>It proposes candidate regions on a whole film: the breast cut out and resampled to "
        f"{spec.input.spacing_mm:g} mm per pixel on a {width} x {height} canvas; it looks only at films of "
        f"{spec.min_spacing_mm:g}-{spec.max_spacing_mm:g} mm pixel spacing, the range it was trained on.</p>"
    )
    return f"<h2>Mass detector</h2>{reads}{_froc_section(spec.froc)}{_detector_gate(spec.fidelity)}"


def _froc_section(froc: dict[str, Any]) -> str:
    points = froc.get("points", [])
    if not points:
        return "<p>No cross-validated FROC was measured for this detector (it was trained without real films).</p>"
    data = froc.get("data", {})
    names = (("films", "films"), ("patients", "patients"), ("masses", "masses"), ("normal_films", "normal films"))
    counted = ", ".join(f"{data[key]} {name}" for key, name in names if key in data)
    rows = "".join(
        f"<tr><td>{point['fp_per_film']:g}</td><td>{point['sensitivity']:.2f}</td>"
        f"<td>{point['ci'][0]:.2f}-{point['ci'][1]:.2f}</td></tr>"
        for point in points
    )
    return f"""<p>FROC by {html.escape(str(froc.get("folds", "?")))}-fold cross-validation grouped by
{html.escape(str(froc.get("grouped_by", "?")))} ({html.escape(counted or "data not recorded")}; from
<code>{html.escape(str(froc.get("source", "?")))}</code>). A hit: {html.escape(str(froc.get("hit_rule", "?")))}.
Intervals: 95%, patients resampled.</p>
<figure>{_froc_curve(points)}<figcaption>Sensitivity per false positives per film</figcaption></figure>
<table><tr><th>false positives per film</th><th>sensitivity</th><th>95% CI</th></tr>{rows}</table>"""


def _froc_curve(points: list[dict[str, Any]]) -> str:
    """The FROC as an inline SVG: false positives per film on a log axis, sensitivity 0..1, each point's interval."""
    width, height, margin = 360, 220, 36
    rates = [math.log2(float(point["fp_per_film"])) for point in points]
    low, high = min(rates), max(rates)

    def y(sensitivity: float) -> float:
        return round(height - margin - sensitivity * (height - 2 * margin), 1)

    parts = [
        f'<line x1="{margin}" y1="{height - margin}" x2="{width - margin}" y2="{height - margin}" stroke="#111"/>',
        f'<line x1="{margin}" y1="{margin}" x2="{margin}" y2="{height - margin}" stroke="#111"/>',
        f'<text x="{margin - 6}" y="{margin + 4}" font-size="11" text-anchor="end">1</text>',
        f'<text x="{margin - 6}" y="{height - margin + 4}" font-size="11" text-anchor="end">0</text>',
    ]
    line = []
    for rate, point in zip(rates, points, strict=True):
        x = round(margin + (rate - low) / max(high - low, 1e-9) * (width - 2 * margin), 1)
        line.append(f"{x},{y(float(point['sensitivity']))}")
        lower, upper = (y(float(bound)) for bound in point["ci"])
        parts.append(f'<line x1="{x}" y1="{lower}" x2="{x}" y2="{upper}" stroke="#888"/>')
        parts.append(
            f'<text x="{x}" y="{height - margin + 16}" font-size="11" text-anchor="middle">'
            f"{point['fp_per_film']:g}</text>"
        )
    parts.append(f'<polyline points="{" ".join(line)}" fill="none" stroke="#06c" stroke-width="2"/>')
    return (
        f'<svg role="img" aria-label="FROC curve" width="{width}" height="{height}" viewBox="0 0 {width} {height}">'
        f"{''.join(parts)}</svg>"
    )


def _detector_gate(fidelity: dict[str, Any]) -> str:
    if not fidelity:
        return ""
    sensitivities = fidelity.get("sensitivity_at_1_fp", {})
    return (
        f"<p>Shipped as {html.escape(str(fidelity.get('variant')))}: on {fidelity.get('films')} films it proposes "
        f"{fidelity.get('agreement', 0):.3f} of the {fidelity.get('candidates_shown')} candidates the float detector "
        f"shows, within one heatmap cell; sensitivity at 1 false positive per film {sensitivities.get('keras', 0):.2f} "
        f"(float) and {sensitivities.get('tflite', 0):.2f} (shipped), on those films.</p>"
    )


def _latency(manifest: Manifest) -> str:
    rows = []
    for reference in sorted(REFERENCES.glob("*.json")) if REFERENCES.is_dir() else []:
        document = json.loads(reference.read_text())
        for row in document.get("results", []):
            if (
                row.get("architecture") == manifest.architecture
                and row.get("input_size") == manifest.preprocess.input_size
            ):
                rows.append(
                    f"<tr><td>{html.escape(document['device'])}</td><td>{html.escape(row['variant'])}</td>"
                    f"<td>{row['threads']}</td><td>{html.escape(row['runtime'])}</td><td>{row['p50_ms']:.1f}</td>"
                    f"<td>{row['p99_ms']:.1f}</td></tr>"
                )
    if not rows:
        return f"""<h2>Latency on the reference machines</h2>
<p>No reference machine has been measured with a {html.escape(manifest.architecture)} at
{manifest.preprocess.input_size} px. Measure this bundle on the target device:
<code>mammo-bench latency BUNDLE</code>.</p>"""
    return f"""<h2>Latency on the reference machines</h2>
<p>The same architecture and input size, measured by <code>mammo-bench latency</code> (benchmarks/reference).</p>
<table><tr><th>machine</th><th>variant</th><th>threads</th><th>runtime</th><th>p50 ms</th><th>p99 ms</th></tr>
{"".join(rows)}</table>"""


def _limits(manifest: Manifest) -> str:
    sources = manifest.training.get("sources", [])
    synthetic = (
        "<li>Trained on <strong>synthetic</strong> masses only: its figures say nothing about real mammograms.</li>"
        if sources and all(str(source).upper().startswith("SYNTH") for source in sources)
        else ""
    )
    n_test = manifest.metrics.get("test", {}).get("n_groups")
    return f"""<h2>Known limits</h2>
<ul>{synthetic}
<li>The test split holds {n_test if n_test is not None else "an unknown number of"} groups: the intervals above
are wide accordingly; a new site needs its own evaluation.</li>
<li>The probability is calibrated on the validation split of these sources; it is not a risk for a patient.</li>
<li>Grad-CAM shows where the evidence for malignancy lies within the region, not the lesion's outline.</li>
<li>int8 files agree with the float model within the gate's limits above, not exactly; on x86 without VNNI they
are smaller but not faster.</li>
</ul>"""


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'">
<title>{title}</title>
<style>
body{{font-family:system-ui,sans-serif;margin:1rem;max-width:70rem;color:#111}}
.notice{{border:3px solid #b00;padding:.5rem;font-weight:bold}}
table{{border-collapse:collapse}} td,th{{border-bottom:1px solid #ccc;padding:.3rem .6rem;text-align:left}}
figure{{display:inline-block;margin:0 1rem 1rem 0}}
</style></head>
<body>
<p class="notice" role="note">{notice}</p>
<h1>{title}</h1>
{body}
</body></html>
"""
