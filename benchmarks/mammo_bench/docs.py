"""``mammo-bench docs``: every figure the READMEs quote, written into them from the committed result files.

A figure typed by hand goes stale the first time anything is measured again. Each quoted block sits between
``<!-- figures:NAME -->`` and ``<!-- /figures:NAME -->`` and is rendered here from the result files under
``benchmarks/results/``, with the machine they were measured on; ``--check`` (run by the tests) exits 1 naming every
block that differs from what the committed results say, so a new measurement cannot land without its docs.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edge_app.errors import DataError
from mammo_bench.machine import describe_machine
from mammo_bench.stages import stages_table, total_minutes
from mammo_bench.summary import peers_section, regions_section, summary_markdown

RESULTS = Path("benchmarks/results")
MACHINE_224 = RESULTS / "x86_64-2core-224"


def _load(repo: Path, path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((repo / path).read_text())
    return loaded


def _summary_224(repo: Path) -> str:
    latency, pipeline, daemon = (
        _load(repo, MACHINE_224 / f"{name}.json") for name in ("latency", "pipeline", "daemon")
    )
    return summary_markdown(latency, pipeline["pipeline"], daemon["daemon"])


def _peers(repo: Path) -> str:
    peers = _load(repo, MACHINE_224 / "peers.json")
    return "\n".join([describe_machine(peers["machine"]), "", *peers_section(peers)]) + "\n"


def _regions(repo: Path) -> str:
    regions = _load(repo, MACHINE_224 / "regions.json")
    figures = regions["regions"]
    head = (
        f"{describe_machine(regions['machine'])} A {figures['columns']} x {figures['rows']} 16-bit film, "
        f"{figures['model']['variant']} on {figures['model']['runtime']}, median of {figures['rounds']} rounds:"
    )
    return "\n".join([head, "", *regions_section(figures)]) + "\n"


def _mias(repo: Path) -> str:
    return (repo / RESULTS / "mias_null.md").read_text()


def _demo_minutes(repo: Path) -> str:
    return str(total_minutes(_load(repo, RESULTS / "demo-stages.json")))


def _demo(repo: Path) -> str:
    document = _load(repo, RESULTS / "demo-stages.json")
    return f"{describe_machine(document['machine'])}\n\n```\n{stages_table(document['stages'])}\n```\n"


def _mark(repo: Path) -> str:
    """The reader's wait after submitting regions, against one analysis, and the marking view's load."""
    document = _load(repo, RESULTS / "mark.json")
    figures = document["mark"]
    film, model = figures["film"], figures["model"]
    view = figures["marking_view_load_s"]
    lines = [
        f"{describe_machine(document['machine'])} A {film['columns']} x {film['rows']} 16-bit DICOM film, one "
        f"region, {model['name']} {model['version']} ({model['variant']}, {model['runtime']}), {figures['rounds']} "
        "rounds:",
        "",
        "| | p50 ms | min ms | max ms |",
        "| --- | --- | --- | --- |",
    ]
    rows = [
        ("one analysis (analyse and write, SR and SC)", figures["analysis_ms"]),
        ("submit to answer", figures["submit_to_answer_ms"]),
    ]
    if view is not None:
        rows.append(("the marking view in Chromium, to the film drawn", view))
    for name, stats in rows:
        lines.append(f"| {name} | {stats['p50_ms']:.0f} | {stats['min_ms']:.0f} | {stats['max_ms']:.0f} |")
    lines += ["", f"Submit to answer / one analysis (medians): **{figures['ratio_p50']:.2f}**."]
    return "\n".join(lines) + "\n"


def _pacs(repo: Path) -> str:
    """A clinic's path through Orthanc, from the modality's send to the answers stored: by each protocol with the
    device's default waits, and by C-STORE without the wait for a region file."""
    runs = [_load(repo, RESULTS / f"pacs-{name}.json") for name in ("dimse", "dicomweb", "dimse-nowait")]
    first = runs[0]["pacs"]
    film, device = first["film"], first["device"]
    lines = [
        f"{describe_machine(runs[0]['machine'])} Debian's Orthanc; studies of {first['views_per_study']} synthetic "
        f"{film['columns']} x {film['rows']} 16-bit views ({film['bytes'] / 1e6:.1f} MB each) sent one after the other "
        f"by storescu; the device's {device['model']} ({device['variant']}, {device['threads']} threads):",
        "",
        "| answers back by | `settle_seconds`, `sidecar_wait` | studies | s per study (p50) | s per view "
        "| device's share | the model's work |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for run in runs:
        figures = run["pacs"]
        waits = figures["device"]
        lines.append(
            f"| {figures['protocol']} | {waits['settle_seconds']:g} s, {waits['sidecar_wait']:g} s | "
            f"{figures['studies']} | {figures['seconds_per_study_p50']:.1f} | {figures['seconds_per_view_p50']:.2f} | "
            f"{figures['device_share_p50']:.0%} | {figures['compute_share_p50']:.0%} |"
        )
    return "\n".join(lines) + "\n"


def _fleet(repo: Path) -> str:
    """The Ansible rollout of a new model to staging devices while each classifies, one board failing."""
    run = _load(repo, RESULTS / "fleet-rollout.json")
    fleet, settings = run["fleet"], run["settings"]
    return (
        f"{describe_machine(run['machine'])}\n\nA rollout of a new version of the model in `{settings['bundle']}` to "
        f"{fleet['targets']} staging devices (a canary, then batches of {fleet['batches'][1]}), each given a scan "
        f"every {settings['feed_seconds']:g} s throughout, one board made to miscompute the new version: "
        f"{fleet['seconds']:.0f} s from start to end; {fleet['on_new_version']} devices on the new version, "
        f"{fleet['failed']} failed and {fleet['rolled_back']} rolled back (its self-test refused the model); "
        f"{fleet['scans_fed']} scans given, {fleet['scans_answered']} answered, {fleet['scans_lost']} lost "
        "(`benchmarks/results/fleet-rollout.json`). Provisioning them first, from the offline archive, one device at "
        f"a time: {fleet['provision_seconds']:.0f} s.\n"
    )


def _froc(repo: Path) -> str:
    """The mass detector's FROC on MIAS by patient-grouped cross-validation, with its intervals and normal films."""
    document = _load(repo, RESULTS / "froc-mias.json")
    data, points = document["data"], document["points"]
    left_out = "; ".join(f"{film}: {why}" for film, why in data["left_out"].items()) or "none"
    at_one = next(point for point in points if point["fp_per_film"] == 1.0)
    normal = next(item for item in document["normal_films"]["at"] if item["fp_per_film"] == 1.0)
    lines = [
        f"{data['films']} MIAS films ({data['patients']} patients, {data['masses']} masses, {data['normal_films']} "
        f"normal films; left out: {left_out}), {document['folds']}-fold cross-validation grouped by "
        f"{document['grouped_by']}; hit: {document['hit_rule']}. 95% intervals: patients resampled "
        "(`benchmarks/results/froc-mias.json`, plot `froc-mias.png`).",
        "",
        "| false positives per film | " + " | ".join(f"{point['fp_per_film']:g}" for point in points) + " |",
        "| --- |" + " --- |" * len(points),
        "| sensitivity | " + " | ".join(f"{point['sensitivity']:.2f}" for point in points) + " |",
        "| 95% interval | " + " | ".join(f"{point['ci'][0]:.2f}-{point['ci'][1]:.2f}" for point in points) + " |",
        "",
        f"At 1 false positive per film: sensitivity **{at_one['sensitivity']:.2f}** ({at_one['ci'][0]:.2f}-"
        f"{at_one['ci'][1]:.2f}); the normal films get {normal['normal_fp_per_film']:.2f} false positives each at "
        "that operating point.",
    ]
    return "\n".join(lines) + "\n"


def _detect(repo: Path) -> str:
    """The detector on a full-size film against one classifier invoke, in one run, and its peak memory."""
    document = _load(repo, RESULTS / "detect.json")
    figures = document["detect"]
    film, against, parts = figures["film"], figures["against"], figures["detection_ms"]
    lines = [
        f"{describe_machine(document['machine'])} A {film['columns']} x {film['rows']} 16-bit DICOM film at "
        f"{film['spacing_mm']:g} mm, medians of {figures['rounds']} interleaved rounds "
        "(`benchmarks/results/detect.json`):",
        "",
        "| decode ms | canvas, invoke, candidates ms | detection ms | one classifier invoke ms | ratio | peak RSS MB |",
        "| --- | --- | --- | --- | --- | --- |",
        f"| {parts['decode_ms']:.1f} | {parts['propose_ms']:.1f} | {parts['total_ms']:.1f} | "
        f"{figures['classifier_invoke_ms']:.1f} ({against['input_size']} px, {against['variant']}) | "
        f"**{figures['ratio']:.2f}** | {figures['peak_rss_mb']:.0f} |",
    ]
    return "\n".join(lines) + "\n"


def _int8_study(repo: Path) -> str:
    study = _load(repo, RESULTS / "int8-study-96.json")
    thresholds = study["thresholds"]
    lines = [
        f"`{study['model']}` (the test suite's 96 px hybrid), {study['fidelity_images']} fidelity images; the gate: "
        f"AUC drop <= {thresholds['max_auc_drop']}, agreement >= {thresholds['min_agreement']}, heatmap Pearson >= "
        f"{thresholds['min_heatmap_pearson']}.",
        "",
        "| ranges | bias correction | weight rounding | logit | agreement | AUC drop | heatmap Pearson | mean abs dp "
        "| gate |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in study["rows"]:
        recipe = row["recipe"]
        ranges = f"percentile {recipe['percentile']:g}" if recipe["ranges"] == "percentile" else recipe["ranges"]
        verdict = "; ".join(row["failures"]) or "passes"
        lines.append(
            f"| {ranges} | {recipe['bias']} | {recipe.get('rounding', 'nearest')} | {recipe.get('logit', 'int8')} | "
            f"{row['agreement']:.4f} | "
            f"{row['auc_drop']:.4f} | "
            f"{row['heatmap_pearson']:.4f} | {row['mean_abs_prob_diff']:.4f} | {verdict} |"
        )
    return "\n".join(lines) + "\n"


def _gate_stability(repo: Path) -> str:
    """Per recipe: how often int8 shipped over its training seeds, and how far above the agreement bar."""
    recipes = _load(repo, RESULTS / "gate-stability.json")["recipes"]
    lines = [
        "| recipe | measured | seeds | int8 first time | after repair | rejected | min agreement | median margin over "
        "the bar | min heatmap Pearson |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, entry in recipes.items():
        summary = entry["summary"]
        shipped = summary["min_agreement"] is not None  # all three figures are None when no seed shipped int8
        figures = (
            f"{summary['min_agreement']:.4f} | {summary['median_agreement_margin']:+.4f} | "
            f"{summary['min_heatmap_pearson']:.4f}"
            if shipped
            else "none shipped | none shipped | none shipped"
        )
        lines.append(
            f"| {name} | {entry['created'][:10]} | {summary['k']} | {summary['int8_first']} | "
            f"{summary['int8_repaired']} | {summary['int8_rejected']} | {figures} |"
        )
    return "\n".join(lines) + "\n"


def _test_minutes(repo: Path) -> str:
    return str(-int(-_load(repo, RESULTS / "ci-run.json")["seconds"] // 60))


BLOCKS: dict[tuple[str, str], Callable[[Path], str]] = {
    ("benchmarks/README.md", "x86_64-2core-224"): _summary_224,
    ("benchmarks/README.md", "peers"): _peers,
    ("benchmarks/README.md", "regions"): _regions,
    ("benchmarks/results/training.md", "mias-null"): _mias,
    ("README.md", "demo"): _demo,
    ("README.md", "froc-mias"): _froc,
    ("README.md", "detect"): _detect,
    ("docs/web.md", "mark"): _mark,
    ("docs/pacs.md", "pacs"): _pacs,
    ("deploy/README.md", "fleet"): _fleet,
    ("docs/int8.md", "int8-study"): _int8_study,
    ("docs/int8.md", "gate-stability"): _gate_stability,
}
INLINE: dict[tuple[str, str], Callable[[Path], str]] = {
    # file, a pattern whose one group is the figure
    ("README.md", r"make demo +# .*?\((\d+) min of stages on 2 cores"): _demo_minutes,
    ("README.md", r"make test +# .*?\((\d+) min on 2 cores"): _test_minutes,
    ("docs/testing.md", r"\| (\d+) min from a clean clone"): _test_minutes,
}


def render(repo: Path) -> dict[str, str]:
    """Each documented file's text with every block and inline figure as the committed results give it."""
    texts: dict[str, str] = {}
    for (name, block), make in BLOCKS.items():
        text = texts.get(name) or (repo / name).read_text()
        pattern = re.compile(rf"(<!-- figures:{re.escape(block)} -->\n).*?(<!-- /figures:{re.escape(block)} -->)", re.S)
        match = pattern.search(text)
        if match is None:
            raise DataError(f"{name} has no <!-- figures:{block} --> block")
        texts[name] = text[: match.end(1)] + make(repo) + text[match.start(2) :]
    for (name, expression), make in INLINE.items():
        text = texts.get(name) or (repo / name).read_text()
        match = re.search(expression, text)
        if match is None:
            raise DataError(f"{name} has no figure matching {expression!r}")
        texts[name] = text[: match.start(1)] + make(repo) + text[match.end(1) :]
    return texts


def stale(repo: Path) -> list[str]:
    """The documented files whose figures differ from the committed results."""
    return [name for name, text in render(repo).items() if (repo / name).read_text() != text]


def write(repo: Path) -> list[str]:
    """Write the figures into the docs; the files changed."""
    changed = stale(repo)
    for name, text in render(repo).items():
        if name in changed:
            (repo / name).write_text(text)
    return changed
