"""``mammo-bench all``: one markdown summary of a latency, a pipeline and a daemon run on one machine."""

from __future__ import annotations

from typing import Any

from mammo_bench.machine import describe_machine

VARIANT_ORDER = ("keras-float32", "float32", "float16", "dynamic", "int8")


def _p50(rows: list[dict[str, Any]], variant: str, threads: int, role: str = "classifier") -> float | None:
    for row in rows:
        if row["variant"] == variant and row["threads"] == threads and row["role"] == role:
            return float(row["p50_ms"])
    return None


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def latency_section(latency: dict[str, Any]) -> list[str]:
    rows = latency["results"]
    peak = latency["machine"]["peak"]
    threads = sorted({int(row["threads"]) for row in rows})
    top = max(threads)
    lines = [
        "| variant | file MB | " + " | ".join(f"p50 ms, {t} thr" for t in threads) + f" | p99 ms, {top} thr | "
        f"peak RSS MB | GMAC/s, {top} thr | of peak |",
        "| --- | --- | " + " | ".join("---" for _ in threads) + " | --- | --- | --- | --- |",
    ]
    classifiers = [row for row in rows if row["role"] == "classifier" and row["threads"] == top]
    for row in sorted(classifiers, key=lambda r: VARIANT_ORDER.index(r["variant"])):
        variant = row["variant"]
        peak_rate = peak["int8_gmacs"] if variant == "int8" else peak["float32_gmacs"]
        share = f"{100 * row['gmac_per_s'] / peak_rate:.0f}%" if row.get("gmac_per_s") and peak_rate else "-"
        lines.append(
            f"| {variant} | {_fmt(row['size_mb'])} | "
            + " | ".join(_fmt(_p50(rows, variant, t)) for t in threads)
            + f" | {_fmt(row['p99_ms'])} | {_fmt(row['peak_rss_mb'])} | {_fmt(row.get('gmac_per_s'))} | {share} |"
        )
    shares = [
        row["gmac_per_s"] / (peak["int8_gmacs"] if row["variant"] == "int8" else peak["float32_gmacs"])
        for row in classifiers
        if row.get("gmac_per_s") and peak["float32_gmacs"]
    ]
    if shares and max(shares) > 1:
        lines.append(
            f"\nAbove 100% of peak: the clock this machine reports ({peak['clock_ghz']:.2f} GHz) is below the one it "
            "ran at (boost; virtual machines report the nominal clock), so the peak is a lower bound here."
        )
    lines.append("")
    device = "int8" if any(row["variant"] == "int8" for row in rows) else "float32"  # what the device runs
    for count in threads:
        head = _p50(rows, "float32", count, "gradcam_head")
        invoke = _p50(rows, device, count)
        if head is not None and invoke:
            lines.append(
                f"- Grad-CAM head, {count} thr: p50 {head:.2f} ms, {100 * head / invoke:.1f}% of the {device} invoke."
            )
    return lines


def summary_markdown(latency: dict[str, Any], pipeline: dict[str, Any], daemon: dict[str, Any]) -> str:
    machine = latency["machine"]
    rows = latency["results"]
    gmacs = next((row["gmacs"] for row in rows if row.get("gmacs") and row["role"] == "classifier"), None)
    lines = [
        f"{describe_machine(machine)} Model: {rows[0].get('architecture')} at "
        f"{rows[0].get('input_size')} px, {_fmt(gmacs, 2)} GMAC per image (counted from the graph).",
        "",
        *latency_section(latency),
        "",
    ]
    stages = pipeline["stages"]
    lines += [
        f"Per scan ({pipeline['model']['variant']}, {pipeline['model']['runtime']}), p50 ms: "
        + ", ".join(f"{name.removesuffix('_ms')} {stats['p50_ms']:.1f}" for name, stats in stages.items())
        + f". Probability only {pipeline['probability_only']['p50_ms']:.1f} ms, with heatmap "
        f"{pipeline['probability_heatmap']['p50_ms']:.1f} ms: **{pipeline['heatmap_cost_ratio']:.3f}x**.",
        "",
        daemon_line(daemon),
    ]
    return "\n".join(lines) + "\n"


def daemon_line(daemon: dict[str, Any]) -> str:
    """The daemon run in one paragraph: its throughput and its single-file latency, each against the invoke time it
    recorded in the same run."""
    invoke = daemon["invoke_in_daemon"]["p50_ms"]
    line = (
        f"Daemon ({daemon['variant']}, {daemon['threads']} threads, {daemon['files']} files in one burst, settle "
        f"{daemon['settle_seconds']} s): start-up to READY {daemon['startup_to_ready_s']:.2f} s; "
        f"{daemon['files_per_s']:.2f} files/s from the first drop ({daemon['wall_ms_per_file']:.1f} ms per file, the "
        f"burst's settle wait included)"
    )
    if "busy_ms_per_file" in daemon:
        line += (
            f"; once working, **{daemon['busy_ms_per_file']:.1f} ms per file end to end vs {invoke:.1f} ms invoke "
            f"inside it (p50): {daemon['busy_per_file_over_invoke']:.3f}x**"
        )
    line += (
        f"; drop-to-result in the burst p50 {daemon['drop_to_result']['p50_ms']:.0f} ms, p99 "
        f"{daemon['drop_to_result']['p99_ms']:.0f} ms (the queue)"
    )
    if "single_drop_to_result" in daemon:
        single = daemon["single_drop_to_result"]
        line += (
            f"; a single file into an idle daemon: **{single['p50_ms']:.0f} ms** drop to result (p50 of "
            f"{single['runs']}; budget settle + 1.2 invokes = {daemon['single_budget_ms']:.0f} ms: "
            f"{daemon['single_over_budget']:.3f}x)"
        )
    return line + f"; peak RSS {_fmt(daemon['peak_rss_mb'])} MB."


def _runtime_name(row: dict[str, Any]) -> str:
    return str(row["runtime"]).split()[0]


def peers_section(latency: dict[str, Any]) -> list[str]:
    """Every runtime's classifier rows side by side with their fidelity against Keras float, then the fastest row
    that passes the conversion's fidelity gate (the bar every shipped variant met) against LiteRT's fastest."""
    rows = [row for row in latency["results"] if row["role"] == "classifier"]
    threads = sorted({int(row["threads"]) for row in rows})
    top = max(threads)

    def p50(runtime: str, variant: str, count: int) -> float | None:
        found = [r for r in rows if (_runtime_name(r), r["variant"], r["threads"]) == (runtime, variant, count)]
        return float(found[0]["p50_ms"]) if found else None

    lines = [
        "| runtime | variant | file MB | "
        + " | ".join(f"p50 ms, {t} thr" for t in threads)
        + f" | p99 ms, {top} thr | peak RSS MB | agreement | max abs dp | heatmap r (min) |",
        "| --- | --- | --- | " + " | ".join("---" for _ in threads) + " | --- | --- | --- | --- | --- |",
    ]
    shown = [row for row in rows if row["threads"] == top]
    for row in shown:
        runtime, variant = _runtime_name(row), row["variant"]
        heatmap = (
            "-"
            if row.get("heatmap_pearson") is None
            else f"{row['heatmap_pearson']:.3f} ({row['heatmap_pearson_min']:.3f})"
        )
        agreement = "reference" if variant.startswith("keras") else _fmt(row.get("agreement"), 3)
        lines.append(
            f"| {runtime} | {variant} | {_fmt(row['size_mb'])} | "
            + " | ".join(_fmt(p50(runtime, variant, t)) for t in threads)
            + f" | {_fmt(row['p99_ms'])} | {_fmt(row['peak_rss_mb'])} | {agreement} | "
            f"{_fmt(row.get('max_abs_prob_diff'), 3)} | {heatmap} |"
        )
    gate = latency.get("gate")  # the thresholds the bundle's own variants were held to (its report.json)
    if gate is None:
        return lines
    agreement, pearson = gate["min_agreement"], gate["min_heatmap_pearson"]
    faithful = [
        row
        for row in shown
        if (row.get("agreement") or 0) >= agreement and (row.get("heatmap_pearson") or 0) >= pearson
    ]
    lines.append("")
    best = min(faithful, key=lambda row: row["p50_ms"])
    litert = min((r for r in faithful if _runtime_name(r) == "ai_edge_litert"), key=lambda r: r["p50_ms"])
    images = max((int(row.get("fidelity_images") or 0) for row in shown), default=0)
    lines.append(
        f"Fastest at {top} threads among the rows that pass the conversion's fidelity gate on {images} images "
        f"(agreement >= {agreement}, mean heatmap r >= {pearson}): {_runtime_name(best)} {best['variant']}, "
        f"{best['p50_ms']:.1f} ms, against LiteRT {litert['variant']} {litert['p50_ms']:.1f} ms "
        f"({litert['p50_ms'] / best['p50_ms']:.2f}x)."
    )
    for row in shown:  # a LiteRT variant the gate refuses, kept (`mammo-convert --force`) to be measured
        if _runtime_name(row) == "ai_edge_litert" and row not in faithful and row.get("agreement") is not None:
            lines.append(
                f"LiteRT {row['variant']} misses the gate (agreement {row['agreement']:.3f}, mean heatmap r "
                f"{_fmt(row.get('heatmap_pearson'), 3)}): {row['p50_ms']:.1f} ms, "
                f"{litert['p50_ms'] / row['p50_ms']:.2f}x LiteRT {litert['variant']}'s speed."
            )
    return lines


def regions_section(regions: dict[str, Any]) -> list[str]:
    per_count = regions["per_count"]
    lines = [
        "| regions N | film: ms per region | N patch files: ms per region | film / patches |",
        "| --- | --- | --- | --- |",
    ]
    for count, row in per_count.items():
        lines.append(
            f"| {count} | {row['film_ms_per_region']:.1f} | {row['patches_ms_per_region']:.1f} | {row['ratio']:.3f} |"
        )
    return lines
