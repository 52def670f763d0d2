"""mammo-bench: statistics, machine peak and MAC counting, compare exit codes, and each command on the CI bundle.

No test asserts a time: timings are checked for shape and consistency (counts, ordering of percentiles), never for
speed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import shipped_variant
from dicomnode import needs_dcmtk
from orthancpacs import needs_orthanc, needs_orthanc_dicomweb

from edge_app.config import resolve_config
from edge_app.manifest import load_manifest
from mammo_bench.autotune import thread_candidates
from mammo_bench.child import run_json_child
from mammo_bench.cli import main as bench_main
from mammo_bench.compare import compare_results, exit_code
from mammo_bench.machine import clock_ghz, cpu_flags, macs_per_cycle
from mammo_bench.stats import summarise

INTERFACE_KEYS = ("model", "variant", "threads", "p50_ms", "mean_ms", "p90_ms", "p99_ms", "init_ms", "peak_rss_mb")


def test_summary_statistics_of_known_samples() -> None:
    stats = summarise([float(v) for v in range(1, 101)])
    assert stats.runs == 100 and stats.min_ms == 1 and stats.max_ms == 100
    assert stats.mean_ms == pytest.approx(50.5) and stats.p50_ms == pytest.approx(50.5)
    assert stats.p90_ms == pytest.approx(90.1) and stats.p99_ms == pytest.approx(99.01)
    assert stats.std_ms == pytest.approx(np.std(np.arange(1, 101), ddof=1))
    single = summarise([7.0])
    assert (single.p50_ms, single.p99_ms, single.std_ms) == (7.0, 7.0, 0.0)


@pytest.mark.parametrize("samples", [[], [1.0, -2.0], [float("nan")]])
def test_summary_refuses_empty_or_invalid_samples(samples: list[float]) -> None:
    with pytest.raises(ValueError):
        summarise(samples)


def test_child_result_and_failures(tmp_path: Path) -> None:
    """A child's last stdout line is its JSON result; a failure names the measurement and the child's reason."""
    document = tmp_path / "result.json"
    document.write_text('{"peak_rss_mb": 12.5}')
    assert run_json_child("json.tool", ["--compact", str(document)], "echo") == {"peak_rss_mb": 12.5}
    with pytest.raises(RuntimeError, match=r"^echo printed no JSON result$"):
        run_json_child("json.tool", [str(document)], "echo")  # indented: the last line is "}"
    with pytest.raises(
        RuntimeError,
        match=r"^memory probe of missing.tflite failed: .*ModelRefusedError: .* cannot run missing.tflite: ",
    ):
        run_json_child(
            "mammo_bench.memory", [str(tmp_path / "missing.tflite"), "1", "auto"], "memory probe of missing.tflite"
        )


def test_machine_peak_from_cpu_flags() -> None:
    x86 = "model name\t: Some CPU @ 2.50GHz\nflags\t\t: fpu sse4_2 avx avx2 fma\n"
    arm = "processor\t: 0\nFeatures\t: fp asimd asimddp crc32\nModel\t: Raspberry Pi 5\n"
    assert cpu_flags(x86) == ["sse4_2", "avx", "avx2", "fma"] and macs_per_cycle(cpu_flags(x86)) == (16, 64)
    assert macs_per_cycle(cpu_flags(arm)) == (8, 32)
    assert macs_per_cycle(["asimd"]) == (8, 16) and macs_per_cycle(["avx512f", "avx512_vnni"]) == (32, 128)
    if not Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq").is_file():
        assert clock_ghz(x86) == 2.5


def test_thread_candidates() -> None:
    assert thread_candidates(1) == [1]
    assert thread_candidates(2) == [1, 2]
    assert thread_candidates(6) == [1, 2, 4, 6]
    assert thread_candidates(8) == [1, 2, 4, 8]


def _result(p50: dict[tuple[str, int], float]) -> dict[str, Any]:
    return {
        "results": [
            {
                "model": f"{variant}.tflite",
                "architecture": "hybrid",
                "input_size": 224,
                "variant": variant,
                "threads": threads,
                "runtime": "ai_edge_litert 2.3",
                "p50_ms": value,
            }
            for (variant, threads), value in p50.items()
        ]
    }


def test_compare_flags_only_slow_downs_beyond_tolerance() -> None:
    reference = _result({("int8", 1): 100.0, ("int8", 2): 60.0})
    within = compare_results(_result({("int8", 1): 125.0, ("int8", 2): 30.0}), reference)
    assert len(within) == 2 and exit_code(within, 0.3) == 0  # faster is never a regression
    slower = compare_results(_result({("int8", 1): 131.0, ("int8", 2): 60.0}), reference)
    assert exit_code(slower, 0.3) == 1
    assert exit_code(compare_results(_result({("float32", 1): 1.0}), reference), 0.3) == 2  # nothing comparable
    other_size = _result({("int8", 1): 10.0})
    other_size["results"][0]["input_size"] = 96
    assert exit_code(compare_results(other_size, reference), 0.3) == 2  # another input size is another model


@pytest.mark.tensorflow
def test_count_macs_of_a_small_model(tmp_path: Path) -> None:
    tf = pytest.importorskip("tensorflow", reason="builds a small TFLite model")
    import keras

    from edge_app.macs import count_macs
    from edge_app.runtime import load_runtime, make_interpreter

    inputs = keras.Input((8, 8, 2))
    mapped = keras.layers.Conv2D(4, 3, padding="same")(inputs)  # 8*8*4 outputs x 3*3*2 = 4608
    mapped = keras.layers.DepthwiseConv2D(3, padding="same")(mapped)  # 8*8*4 outputs x 3*3 = 2304
    outputs = keras.layers.Dense(3)(keras.layers.Flatten()(mapped))  # 3 x 256 = 768
    path = tmp_path / "small.tflite"
    path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(keras.Model(inputs, outputs)).convert())
    assert count_macs(make_interpreter(load_runtime(), path, 1)) == 4608 + 2304 + 768


@pytest.fixture(scope="module")
def bench_run(bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`mammo-bench all` once: latency at 1 and 2 threads, the pipeline, the daemon, and summary.md."""
    out = tmp_path_factory.mktemp("bench")
    arguments = ["all", str(bundle), "--out", str(out), "--runs", "4", "--warmup", "1", "--files", "12"]
    assert bench_main(arguments) == 0
    return out


@pytest.mark.slow
def test_latency_rows_follow_the_interface(bench_run: Path, bundle: Path) -> None:
    content = json.loads((bench_run / "latency.json").read_text())
    rows = content["results"]
    manifest = load_manifest(bundle)
    size = manifest.preprocess.input_size
    assert {(row["model"], row["threads"]) for row in rows} == {
        (name, threads) for name in manifest.files for threads in (1, 2)
    }
    for row in rows:
        assert all(row[key] is not None for key in INTERFACE_KEYS)
        assert row["runs"] == 4 and len(row["samples_ms"]) == 4
        assert row["min_ms"] <= row["p50_ms"] <= row["p90_ms"] <= row["p99_ms"] <= row["max_ms"]
        assert 0 < row["peak_rss_mb"] < content["process_peak_rss_mb"]  # one model alone, not all of them
        assert row["gmacs"] > 0 and row["input_size"] == size
    classifier = next(row for row in rows if row["model"].startswith("classifier_"))
    # DenseNet121 + ResNet50: 6.69 GMAC at 224 px, and every convolution's work scales with the input's area
    assert classifier["gmacs"] == pytest.approx(6.69 * (size / 224) ** 2, rel=0.05)
    assert content["machine"]["cores"] >= 1 and content["machine"]["runtime"]
    assert (bench_run / "latency.csv").is_file() and (bench_run / "latency.png").is_file()


@pytest.mark.slow
def test_compare_cli_exit_codes(bench_run: Path, tmp_path: Path) -> None:
    result = bench_run / "latency.json"
    content = json.loads(result.read_text())
    assert bench_main(["compare", str(result), str(result)]) == 0
    faster_reference = tmp_path / "reference.json"
    for row in content["results"]:
        row["p50_ms"] = row["p50_ms"] / 2
    faster_reference.write_text(json.dumps(content))
    assert bench_main(["compare", str(result), str(faster_reference), "--tolerance", "0.3"]) == 1
    assert bench_main(["compare", str(result), str(faster_reference), "--tolerance", "1.5"]) == 0
    unrelated = tmp_path / "unrelated.json"
    unrelated.write_text(json.dumps({"results": []}))
    assert bench_main(["compare", str(result), str(unrelated)]) == 2
    assert bench_main(["compare", str(result), str(tmp_path / "missing.json")]) == 2
    malformed = tmp_path / "malformed.json"
    malformed.write_text(json.dumps({"results": [{"model": "x"}]}))
    assert bench_main(["compare", str(result), str(malformed)]) == 2


@pytest.mark.slow
def test_pipeline_reports_every_stage(bench_run: Path) -> None:
    figures = json.loads((bench_run / "pipeline.json").read_text())["pipeline"]
    stages = ("read", "decode", "preprocess", "invoke", "gradcam", "overlay", "write", "total")
    assert set(figures["stages"]) == {f"{stage}_ms" for stage in stages}
    assert all(stats["runs"] == 5 * 8 for stats in figures["stages"].values())  # 5 rounds of 8 scans
    assert figures["probability_only"]["runs"] == figures["probability_heatmap"]["runs"] == 5 * 8
    assert figures["heatmap_cost_ratio"] > 0


@pytest.mark.slow
def test_daemon_benchmark_runs_the_real_daemon(bench_run: Path) -> None:
    figures = json.loads((bench_run / "daemon.json").read_text())["daemon"]
    assert (
        figures["drop_to_result"]["runs"] == 12 and figures["invoke_in_daemon"]["runs"] == 12
    )  # > the 10 queued notifications
    assert figures["startup_to_ready_s"] > 0 and figures["files_per_s"] > 0 and figures["exit_code"] == 0
    latency = figures["drop_to_result"]
    assert latency["min_ms"] <= latency["p50_ms"] <= latency["p99_ms"] <= latency["max_ms"]
    assert figures["busy_ms_per_file"] > 0 and figures["busy_per_file_over_invoke"] > 0
    single = figures["single_drop_to_result"]
    assert single["runs"] == 5 and single["min_ms"] >= 1000 * figures["settle_seconds"]  # the settle is honoured
    assert figures["single_budget_ms"] > 1000 * figures["settle_seconds"]


@pytest.mark.slow
def test_soak_reads_the_daemons_memory_at_each_checkpoint(bundle: Path, tmp_path: Path) -> None:
    """The soak run's mechanics at a small size (the memory figures themselves are in the committed results)."""
    out = tmp_path / "soak.json"
    arguments = ["soak", str(bundle), "--checkpoints", "3,6", "--threads", "1", "--variant", shipped_variant(bundle)]
    assert bench_main([*arguments, "--out", str(out)]) == 0
    figures = json.loads(out.read_text())["soak"]
    assert figures["archived"] == 6 and figures["exit_code"] == 0
    assert set(figures["rss_mb_after"]) == {"3", "6"} and all(v > 0 for v in figures["rss_mb_after"].values())
    assert figures["growth_mb"] == round(figures["rss_mb_after"]["6"] - figures["rss_mb_after"]["3"], 1)
    assert bench_main(["soak", str(bundle), "--checkpoints", "0"]) == 2


@pytest.mark.slow
def test_summary_sets_everything_side_by_side(bench_run: Path, bundle: Path) -> None:
    summary = (bench_run / "summary.md").read_text()
    classifiers = [entry for entry in load_manifest(bundle).files.values() if entry.role == "classifier"]
    rows = [f"| {entry.variant} | {round(entry.size_bytes / 1e6, 2):.1f} |" for entry in classifiers]  # as rows round
    for text in (*rows, "Grad-CAM head, 2 thr", "start-up to READY", "GMAC/s"):
        assert text in summary, text


@pytest.mark.slow
def test_autotune_writes_the_fastest_choice_and_keeps_the_old_config(bundle: Path, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[model]\nvariant = "float32"\nthreads = 7\n\n[ingest]\nsettle_seconds = 5.0\n')
    out = tmp_path / "autotune.json"
    assert (
        bench_main(
            ["autotune", str(bundle), "--threads", "1", "--runs", "3", "--write-config", str(config), "--out", str(out)]
        )
        == 0
    )
    report = json.loads(out.read_text())
    measured = [row for row in report["choices"] if "p50_ms" in row]
    assert {row["variant"] for row in measured} == set(load_manifest(bundle).variants)  # verified ones only
    assert report["fastest"]["p50_ms"] == min(row["p50_ms"] for row in measured)
    written = resolve_config(config, environ={})
    assert written.model.variant == report["fastest"]["variant"] and written.model.threads == 1
    assert written.model.bundle == bundle.resolve() and written.ingest.settle_seconds == 5.0  # the rest is kept
    assert "threads = 7" in (tmp_path / "config.toml.bak").read_text()


def test_dicom_intake_counts_every_instance_both_ways(tmp_path: Path) -> None:
    """The listener stores every instance of the one association (the bench refuses a short count) and the ratio is
    the medians' (no speed is asserted)."""
    out = tmp_path / "dicom.json"
    assert (
        bench_main(["dicom", "--count", "4", "--rows", "64", "--columns", "48", "--repeats", "2", "--out", str(out)])
        == 0
    )
    figures = json.loads(out.read_text())["dicom"]
    assert figures["instances"] == 4 and len(figures["listener_seconds"]) == len(figures["drop_seconds"]) == 2
    listen = sorted(figures["listener_seconds"])[0] + sorted(figures["listener_seconds"])[1]
    drop = sorted(figures["drop_seconds"])[0] + sorted(figures["drop_seconds"])[1]
    assert figures["overhead_ratio"] == pytest.approx(listen / drop, rel=0.02, abs=0.01)
    assert figures["sender"] in ("storescu", "pynetdicom")
    assert bench_main(["dicom", "--count", "0"]) == 2


def test_results_page_bench_renders_a_full_newest_page(tmp_path: Path) -> None:
    out = tmp_path / "page.json"
    assert bench_main(["page", "--results", "100", "--repeats", "2", "--out", str(out)]) == 0
    figures = json.loads(out.read_text())["page"]
    assert figures["results"] == 100 and figures["newest_page_rows"] == 50  # 100 results: two full pages
    assert len(figures["update_after_one_result_s"]) == 2 and figures["update_after_one_result_median_s"] > 0
    assert bench_main(["page", "--results", "0"]) == 2


@pytest.mark.slow
def test_regions_bench_sets_a_film_against_its_patch_files(bundle: Path, tmp_path: Path) -> None:
    """Each film really carries N regions, each classified (the bench refuses otherwise); per-region figures for
    both ways at every N (their ratio is what the committed 224 px run reports; no speed is asserted here)."""
    out = tmp_path / "regions.json"
    arguments = ["regions", str(bundle), "--counts", "1,4", "--rounds", "1", "--rows", "1024", "--columns", "832"]
    assert bench_main([*arguments, "--variant", shipped_variant(bundle), "--out", str(out)]) == 0
    figures = json.loads(out.read_text())["regions"]
    assert set(figures["per_count"]) == {"1", "4"} and figures["model"]["file"].startswith("classifier_")
    for row in figures["per_count"].values():
        assert row["film_ms_per_region"] > 0 and row["patches_ms_per_region"] > 0
        ratio = row["film_ms_per_region"] / row["patches_ms_per_region"]
        assert row["ratio"] == pytest.approx(ratio, rel=0.02, abs=0.01)


@pytest.mark.slow
def test_peer_runtimes_run_the_same_model_with_fidelity_columns(
    bundle: Path, plumbing_run: Path, tmp_path: Path
) -> None:
    """ONNX Runtime and OpenVINO rows (float32 and int8) beside LiteRT's and tflite-runtime's in one result file, each
    classifier row with its fidelity against Keras float. The float32 exports are the same graph: they answer as
    Keras does; the int8 rows are whatever their quantisers give (reported, not asserted)."""
    from conftest import edge_python

    out = tmp_path / "peers.json"
    arguments = ["latency", str(bundle), "--variants", "float32", "--threads", "1", "--runs", "2", "--warmup", "0"]
    arguments += ["--peers", str(tmp_path / "peers"), "--export-peers", "--calibration", "8", "--fidelity", "6"]
    arguments += ["--tflite-runtime-python", edge_python("MAMMO_TEST_TFLITE_PYTHON"), "--no-memory"]
    assert bench_main([*arguments, "--keras", str(plumbing_run), "--out", str(out)]) == 0
    content = json.loads(out.read_text())
    classifiers = {
        (row["runtime"].split()[0], row["variant"]): row for row in content["results"] if row["role"] == "classifier"
    }
    assert set(classifiers) == {
        ("tensorflow", "keras-float32"),  # the reference itself, timed
        ("ai_edge_litert", "float32"),
        ("tflite_runtime", "float32"),
        ("onnxruntime", "float32"),
        ("onnxruntime", "int8"),
        ("openvino", "float32"),
        ("openvino", "int8"),
    }
    del classifiers[("tensorflow", "keras-float32")]
    for (runtime, variant), row in classifiers.items():
        assert row["fidelity_images"] == 6 and 0 <= row["agreement"] <= 1, (runtime, variant)
        assert row["heatmap_pearson"] is not None  # the Keras heatmaps came from the bundle's own training run
        if variant == "float32":
            assert row["agreement"] == 1.0 and row["max_abs_prob_diff"] < 1e-3, (runtime, row)
            assert row["heatmap_pearson_min"] > 0.99, (runtime, row)
    heads = [row for row in content["results"] if row["role"] == "gradcam_head"]
    assert {row["runtime"].split()[0] for row in heads} == {
        "ai_edge_litert",
        "tflite_runtime",
        "onnxruntime",
        "openvino",
    }
    assert content["gate"]["min_agreement"] > 0  # the bundle's own thresholds, to judge the rows by


def test_stage_times_a_step_and_passes_its_exit_code_on(tmp_path: Path) -> None:
    log = tmp_path / "stages.jsonl"
    assert bench_main(["stage", "--log", str(log), "ok", "--", "true"]) == 0
    assert bench_main(["stage", "--log", str(log), "broken", "--", "false"]) == 1  # make stops the demo there
    out = tmp_path / "stages.json"
    assert bench_main(["stages", str(log), "--out", str(out)]) == 0
    stages = json.loads(out.read_text())["stages"]
    assert [(stage["stage"], stage["exit_code"]) for stage in stages] == [("ok", 0), ("broken", 1)]
    assert all(stage["seconds"] >= 0 for stage in stages) and json.loads(out.read_text())["machine"]["cores"] >= 1


def test_ci_run_reads_pytests_closing_line_and_keeps_one_run_per_host_kind(tmp_path: Path) -> None:
    from edge_app.errors import DataError
    from mammo_bench.ci_run import outcome_counts, record_runs

    closing = "========== 2 failed, 679 passed, 1 skipped, 3 warnings, 32 errors in 2640.12s (0:44:00) ==========\n"
    assert outcome_counts("collected\n" + closing) == {"passed": 679, "failed": 2, "errors": 32, "skipped": 1}
    assert outcome_counts("= 1 error in 3.0s =") == {"passed": 0, "failed": 0, "errors": 1, "skipped": 0}
    with pytest.raises(DataError, match="no pytest summary line"):
        outcome_counts("make: *** [Makefile:52: lint] Error 1\n")
    out = tmp_path / "ci-run.json"
    record_runs(out, [{"isa": "avx2", "seconds": 1700}, {"isa": "native", "seconds": 1500}])
    updated = record_runs(out, [{"isa": "native", "seconds": 1400}])
    assert [(run["isa"], run["seconds"]) for run in updated["runs"]] == [("native", 1400), ("avx2", 1700)]
    assert json.loads(out.read_text())["seconds"] == 1700  # the slowest kind is what the README quotes


def test_ci_run_makes_the_folder_of_its_logs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mammo_bench import ci_run

    def clean_clone_run(repo: Path, isa: str, log: Path) -> dict[str, Any]:
        log.write_text("= 1 passed in 1.0s =\n")
        return {"isa": isa, "seconds": 1, "exit_code": 0}

    monkeypatch.setattr(ci_run, "clean_clone_run", clean_clone_run)
    logs = tmp_path / "not" / "yet"
    assert bench_main(["ci-run", "--isa", "avx2", "--out", str(tmp_path / "ci.json"), "--logs", str(logs)]) == 0
    assert (logs / "ci-run-avx2.log").read_text() == "= 1 passed in 1.0s =\n"


def test_the_gate_table_keeps_one_entry_per_recipe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run of the suite's recipe replaces its own entry and leaves the demo's, measured earlier, as it was."""
    from mammo_bench import gate_stability

    measured: list[tuple[Path, gate_stability.GateRecipe, list[int]]] = []

    def measure(work: Path, recipe: gate_stability.GateRecipe, seeds: list[int]) -> dict[str, Any]:
        measured.append((work, recipe, seeds))
        return {"recipe": {"split_by": recipe.split_by}, "seeds": [], "summary": {"k": len(seeds)}}

    monkeypatch.setattr(gate_stability, "measure_gate_stability", measure)
    out = tmp_path / "gate.json"
    out.write_text(json.dumps({"recipes": {"demo": {"summary": {"k": 8}}, "suite": {"summary": {"k": 1}}}}))
    assert bench_main(["gate", "--recipe", "suite", "--seeds", "2", "--work", str(tmp_path), "--out", str(out)]) == 0
    assert measured == [(tmp_path, gate_stability.RECIPES["suite"], [0, 1])]
    assert gate_stability.RECIPES["suite"].convert == ("--float-budget", "0")  # as tests/modelbuild.py converts it
    recipes = json.loads(out.read_text())["recipes"]
    assert recipes["demo"] == {"summary": {"k": 8}}
    assert recipes["suite"]["summary"] == {"k": 2} and recipes["suite"]["recipe"] == {"split_by": "mass"}
    assert recipes["suite"]["tool"] == "mammo-bench gate" and recipes["suite"]["settings"]["recipe"] == "suite"


@pytest.mark.slow
def test_the_mark_bench_times_a_readers_submission_against_one_analysis(bundle: Path, tmp_path: Path) -> None:
    """The daemon and the web app for real, a small film: every round answered (the bench refuses otherwise), the
    ratio the medians', and the marking view's load in Chromium when it is here (no speed is asserted)."""
    out = tmp_path / "mark.json"
    arguments = ["mark", str(bundle), "--variant", shipped_variant(bundle), "--threads", "1", "--rounds", "2"]
    assert bench_main([*arguments, "--rows", "1024", "--columns", "832", "--out", str(out)]) == 0
    figures = json.loads(out.read_text())["mark"]
    assert figures["rounds"] == 2 and (figures["film"]["rows"], figures["film"]["columns"]) == (1024, 832)
    alone, web = figures["analysis_ms"], figures["submit_to_answer_ms"]
    assert alone["runs"] == web["runs"] == 2 and 0 < alone["min_ms"] <= alone["p50_ms"] <= alone["max_ms"]
    assert figures["ratio_p50"] == pytest.approx(web["p50_ms"] / alone["p50_ms"], rel=0.01)
    view = figures["marking_view_load_s"]
    assert view is None or (view["runs"] >= 2 and view["min_ms"] > 0)
    assert bench_main(["mark", str(bundle), "--rounds", "0"]) == 2


@pytest.mark.slow
@needs_orthanc
@needs_dcmtk
@pytest.mark.parametrize("protocol", ["dimse", pytest.param("dicomweb", marks=needs_orthanc_dicomweb)])
def test_the_pacs_bench_times_studies_from_the_modality_to_the_answers_in_orthanc(
    bundle: Path, tmp_path: Path, protocol: str
) -> None:
    """Orthanc, the listener, the daemon and the forwarder for real: each study's films and their answers in Orthanc
    (the bench refuses otherwise), its steps adding up to its time, the device's share a fraction; and the
    screenshot of Orthanc Explorer's study page where Chromium is here."""
    out, shot = tmp_path / "pacs.json", tmp_path / "explorer.png"
    arguments = ["pacs", str(bundle), "--studies", "2", "--protocol", protocol, "--rows", "700", "--columns", "560"]
    arguments += ["--variant", shipped_variant(bundle), "--settle-seconds", "0.2", "--sidecar-wait", "0.2"]
    arguments += ["--root", str(tmp_path / "run"), "--out", str(out)]
    chromium = _has_chromium()
    assert bench_main([*arguments, *(["--screenshot", str(shot)] if chromium else [])]) == 0
    figures = json.loads(out.read_text())["pacs"]
    assert figures["protocol"] == protocol and figures["studies"] == len(figures["per_study"]) == 2
    assert figures["orthanc_series"] == [{"MG": 4, "SR": 4, "OT": 4}] * 2
    for study in figures["per_study"]:
        assert study["statuses"] == ["needs_roi"] * 4  # full films without regions
        assert 0 < study["modality_to_pacs_s"] < study["seconds"] and 0 < study["to_device_s"] < study["seconds"]
        assert study["device_s"] >= 0.2  # at least the settle time
        assert study["compute_s"] > 0 and 0 < study["device_share"] < 1 and study["forward_s"] > 0
    assert figures["seconds_per_view_p50"] == pytest.approx(figures["seconds_per_study_p50"] / 4)
    log = (tmp_path / "run" / "logs" / "dicom-forward.log").read_text()
    assert "forwarded" in log and "failed" not in log
    assert not chromium or shot.read_bytes().startswith(b"\x89PNG")
    assert bench_main(["pacs", str(bundle), "--studies", "0"]) == 2


def _has_chromium() -> bool:
    import importlib.util
    import shutil

    return importlib.util.find_spec("playwright") is not None and shutil.which("chromium") is not None


def _mutation_tool() -> Any:
    """benchmarks/mutation.py, a script beside the package rather than in it."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("mutation", Path(__file__).parents[1] / "benchmarks" / "mutation.py")
    assert spec is not None and spec.loader is not None
    mutation = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mutation)
    return mutation


def test_a_resumed_mutation_run_tests_against_the_packages_current_data_files(tmp_path: Path) -> None:
    """mutmut copies a package's non-Python files once; `make mutation AGAIN=1` refreshes them (a stale result
    schema once failed every test that validates a result, for the schema and not for the mutant)."""
    mutation = _mutation_tool()
    schema, module = tmp_path / "edge_app" / "schemas" / "result.schema.json", tmp_path / "edge_app" / "model.py"
    for path, text in ((schema, "new schema"), (module, "new code")):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    mutation.refresh_package_data(tmp_path)  # a first run: no mutated copy yet, nothing made
    assert not (tmp_path / "mutants").exists()
    copied = tmp_path / "mutants" / "edge_app"
    (copied / "schemas").mkdir(parents=True)
    (copied / "schemas" / "result.schema.json").write_text("old schema")
    (copied / "model.py").write_text("mutated code")
    mutation.refresh_package_data(tmp_path)
    assert (copied / "schemas" / "result.schema.json").read_text() == "new schema"
    assert (copied / "model.py").read_text() == "mutated code"  # mutmut's own


def test_a_run_again_has_mutmut_find_every_tests_coverage_again_and_keeps_the_rest(tmp_path: Path) -> None:
    forget_test_coverage = _mutation_tool().forget_test_coverage
    forget_test_coverage(tmp_path)  # before a first run: nothing to forget, nothing made
    assert not (tmp_path / "mutants").exists()
    stats = tmp_path / "mutants" / "mutmut-stats.json"
    stats.parent.mkdir()
    covered = {"edge_app.detect.x_find_breast": ["tests/test_proposals.py::test_a"]}
    kept = {"tests_by_mangled_function_name": covered, "function_hashes": {"edge_app.detect.x_find_breast": "ab"}}
    stats.write_text(json.dumps({**kept, "duration_by_test": {"tests/test_detect.py::test_b": 0.1}}))
    forget_test_coverage(tmp_path)
    assert json.loads(stats.read_text()) == {**kept, "duration_by_test": {}}


def test_a_sampled_mutation_run_estimates_the_whole_sets_score_from_what_it_drew(
    capsys: pytest.CaptureFixture[str],
) -> None:
    mutation = _mutation_tool()
    assert mutation._wilson(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)  # the textbook values
    assert mutation._wilson(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    # measured before: a, b killed, c survived; drawn from the four never run: d (killed) and e (survived)
    found = {"a": 1, "b": 1, "c": 0, "d": 1, "e": 0, "f": None, "g": None}
    estimate = mutation.sample_estimate(found, ["d", "e"], 4, 7)
    low, high = mutation._wilson(1, 2)
    assert estimate == {
        "drawn_from": 4,
        "size": 2,
        "dropped": 0,
        "seed": 7,
        "drawn": ["d", "e"],
        "survived": 1,
        "survival_rate_ci": [round(low, 4), round(high, 4)],
        "not_run": 2,
        "score_all": round(1 - (2 + 0.5 * 2) / 7, 4),  # f and g survive at the sample's rate
        "score_all_ci": [round(1 - (2 + high * 2) / 7, 4), round(1 - (2 + low * 2) / 7, 4)],
    }
    # a name drawn from the last verdicts whose function changed since: mutmut made its mutants anew, it is gone
    assert mutation.sample_estimate(found, ["d", "e", "gone"], 5, 7) == {
        **estimate,
        "drawn_from": 5,
        "dropped": 1,
        "drawn": ["d", "e", "gone"],
    }
    with pytest.raises(SystemExit):
        mutation.main(["--sample", "5"])
    assert "--sample draws from the mutants never run: give it with --again" in capsys.readouterr().err


def test_a_rescore_counts_the_verdicts_again_with_the_last_results_sample(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """After drawn mutants were re-run by hand (a timeout on a busy machine checked on a quiet one), `--rescore`
    counts the same sample again and runs nothing."""
    mutation = _mutation_tool()
    work, out = tmp_path / "work", tmp_path / "results"
    (work / "mutants" / "edge_app").mkdir(parents=True)
    verdicts = {"a": 1, "b": 0, "c": 0, "d": 0, "e": None}  # d, drawn, timed out at first and now survived
    (work / "mutants" / "edge_app" / "x.py.meta").write_text(json.dumps({"exit_code_by_key": verdicts}))
    monkeypatch.setattr(mutation, "mutmut_command", lambda: "echo")  # `mutmut show NAME` prints the name here
    out.mkdir()
    (out / "mutation.json").write_text(json.dumps({"sample": {"drawn": ["c", "d"], "drawn_from": 3, "seed": 2}}))
    assert mutation.main(["--rescore", "--work", str(work), "--out", str(out)]) == 0
    result = json.loads((out / "mutation.json").read_text())
    assert (result["killed"], result["survived"], result["timeout"], result["not_run"]) == (1, 3, 0, 1)
    assert result["sample"]["drawn"] == ["c", "d"] and result["sample"]["survived"] == 2
    assert (result["sample"]["drawn_from"], result["sample"]["seed"]) == (3, 2)
    assert "## other: anything else (3)" in (out / "mutation-survivors.txt").read_text()
    assert json.loads(capsys.readouterr().out)["survived"] == 3


def test_the_detect_bench_sets_a_full_film_detection_against_one_invoke_and_refuses_a_bundle_without_detector(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The figures' shape on the fake model (the fake runtime, the memory child run in-process); no time asserted."""
    from fakemodel import FAKE_RUNTIME, write_fake_bundle

    import edge_app.model as model_module
    from edge_app.errors import MeasurementError
    from mammo_bench import detect_bench

    monkeypatch.setattr(model_module, "load_runtime", lambda name: FAKE_RUNTIME)
    monkeypatch.setattr(detect_bench, "load_runtime", lambda name: FAKE_RUNTIME)
    children: list[list[str]] = []

    def child(module: str, args: list[str], what: str) -> dict[str, Any]:
        children.append([module, *args])
        assert detect_bench.main(args) == 0
        return dict(json.loads(capsys.readouterr().out.splitlines()[-1]))

    monkeypatch.setattr(detect_bench, "run_json_child", child)
    bundle = write_fake_bundle(tmp_path / "bundle", patch_side_px=(48, 64), detector=True)
    figures = detect_bench.measure_detection(bundle, bundle, "float32", "auto", 1, 1024, 832, 3)
    assert children == [["mammo_bench.detect_bench", str(bundle), "1024", "832", "1", "auto"]]
    assert figures["film"]["rows"] == 1024 and figures["film"]["spacing_mm"] == 0.05  # the trained range's start
    assert figures["against"]["input_size"] == load_manifest(bundle).preprocess.input_size
    parts = figures["detection_ms"]
    assert set(parts) == {"decode_ms", "propose_ms", "total_ms"} and parts["total_ms"] >= parts["decode_ms"] > 0
    assert figures["ratio"] == pytest.approx(parts["total_ms"] / figures["classifier_invoke_ms"], rel=0.02)
    assert figures["peak_rss_mb"] > 0 and figures["rounds"] == 3
    plain = write_fake_bundle(tmp_path / "plain", patch_side_px=(48, 64))
    with pytest.raises(MeasurementError, match="has no detector: convert with `mammo-convert --detector RUN`"):
        detect_bench.measure_detection(plain, plain, "float32", "auto", 1, 1024, 832, 1)
