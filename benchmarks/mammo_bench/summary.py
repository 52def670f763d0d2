"""``mammo-bench all``: one markdown summary of a latency, a pipeline and a daemon run on one machine."""

from __future__ import annotations

from typing import Any

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
    peak = machine["peak"]
    rows = latency["results"]
    gmacs = next((row["gmacs"] for row in rows if row.get("gmacs") and row["role"] == "classifier"), None)
    lines = [
        f"Machine: {machine['cpu']}, {machine['cores']} cores, flags {' '.join(machine['flags'])}, "
        f"{machine['os']}, Python {machine['python']}, {machine['runtime']}. Theoretical peak "
        f"{_fmt(peak['float32_gmacs'], 0)} GMAC/s float32, {_fmt(peak['int8_gmacs'], 0)} GMAC/s int8 "
        f"(clock {_fmt(peak['clock_ghz'], 2)} GHz). Model: {rows[0].get('architecture')} at "
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
        f"Daemon ({daemon['variant']}, {daemon['threads']} threads, {daemon['files']} files in one burst, settle "
        f"{daemon['settle_seconds']} s): start-up to READY {daemon['startup_to_ready_s']:.2f} s; "
        f"{daemon['files_per_s']:.2f} files/s = {daemon['wall_ms_per_file']:.1f} ms per file end to end vs "
        f"{daemon['invoke_in_daemon']['p50_ms']:.1f} ms invoke inside it (p50); drop-to-result p50 "
        f"{daemon['drop_to_result']['p50_ms']:.0f} ms, p99 {daemon['drop_to_result']['p99_ms']:.0f} ms; "
        f"peak RSS {_fmt(daemon['peak_rss_mb'])} MB.",
    ]
    return "\n".join(lines) + "\n"
