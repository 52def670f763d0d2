"""``mammo-bench``: latency (with the peer runtimes), pipeline, daemon, regions, detect, keras, dicom, pacs, fleet,
page, compare, autotune, docs, stage (see ``benchmarks/README.md``).

Exit codes: 0 done, 1 a regression (``compare``) or stale docs (``docs --check``), 2 bad input or nothing
comparable.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

from edge_app.config import IngestSection
from edge_app.errors import DataError, MeasurementError, run_main
from edge_app.manifest import VARIANTS, Manifest, load_manifest
from edge_app.runtime import Runtime, installed_runtimes, load_runtime
from mammo_bench.fidelity import FidelityReference, build_reference, fidelity_figures
from mammo_bench.machine import machine_info, peak_rss_mb
from mammo_bench.peers import PeerModel, peer_runtime
from mammo_bench.report import document, latency_table, write_outputs


def _ints(text: str) -> list[int]:
    values = [int(part) for part in text.split(",") if part.strip()]
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected a comma list of positive integers, got {text!r}")
    return values


def _names(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [name for name in names if name not in VARIANTS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown variant(s) {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    return names


def _isas(text: str) -> list[str]:
    from mammo_bench.ci_run import ISA_ENVIRONMENT

    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [name for name in names if name not in ISA_ENVIRONMENT]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown host kind(s) {', '.join(unknown)}; choose from native, avx2")
    return names


def _timing_arguments(parser: argparse.ArgumentParser, runs: int) -> None:
    parser.add_argument("--threads", type=_ints, default=[1, 2], help="comma list (default 1,2)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--runs", type=int, default=runs)
    parser.add_argument("--max-seconds", type=float, default=300.0, help="stop the timed rounds after this long")
    parser.add_argument("--out", type=Path, help="write FILE.json (+ .csv and .png for latency rows)")


IMAGES_HELP = "a folder of scans (default: synthetic crops the size of the bundle's largest training patch)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mammo-bench", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    latency = commands.add_parser("latency", help="every model file at each thread count, interleaved")
    latency.add_argument("bundle", type=Path)
    latency.add_argument("--variants", type=_names, default=list(VARIANTS))
    latency.add_argument("--runtime", default="auto")
    latency.add_argument("--keras", type=Path, metavar="RUN_DIR", help="add the Keras float rows (train extra)")
    latency.add_argument("--no-memory", action="store_true", help="skip the per-model peak-RSS child processes")
    latency.add_argument(
        "--peers", type=Path, metavar="FOLDER", help="add the ONNX Runtime and OpenVINO rows exported there"
    )
    latency.add_argument("--export-peers", action="store_true", help="export them into --peers first (train extra)")
    latency.add_argument("--calibration", type=int, default=100, help="synthetic patches for the peers' int8")
    latency.add_argument("--fidelity", type=int, default=0, metavar="N", help="fidelity columns on N sample images")
    latency.add_argument("--fidelity-reference", type=Path, help=argparse.SUPPRESS)  # the tflite-runtime child's
    latency.add_argument(
        "--tflite-runtime-python", type=Path, metavar="PYTHON", help="add the tflite-runtime rows, run by this Python"
    )
    _timing_arguments(latency, 50)

    keras_command = commands.add_parser("keras", help="the Keras float model (workstation, train extra)")
    keras_command.add_argument("run", type=Path)
    _timing_arguments(keras_command, 50)

    pipeline = commands.add_parser("pipeline", help="per-scan stages; probability vs probability+heatmap")
    pipeline.add_argument("bundle", type=Path)
    pipeline.add_argument(
        "--images", type=Path, help="a folder of scans (default: 8 synthetic crops, the bundle's patch size)"
    )
    pipeline.add_argument("--variant", default="int8", choices=VARIANTS)
    pipeline.add_argument("--runtime", default="auto")
    pipeline.add_argument("--threads", type=int, default=2)
    pipeline.add_argument("--rounds", type=int, default=5, help="passes through the images")
    pipeline.add_argument("--out", type=Path)

    daemon = commands.add_parser("daemon", help="the real daemon: files/s, drop-to-result latency, RSS, start-up")
    daemon.add_argument("bundle", type=Path)
    daemon.add_argument("--files", type=int, default=50)
    daemon.add_argument(
        "--images", type=Path, help="a folder of scans (default: synthetic crops, the bundle's patch size)"
    )
    daemon.add_argument("--variant", default="int8", choices=VARIANTS)
    daemon.add_argument("--threads", type=int, default=2)
    daemon.add_argument("--settle-seconds", type=float, default=0.2)
    daemon.add_argument("--interval", type=float, default=0.0, help="seconds between drops (0: one burst)")
    daemon.add_argument("--singles", type=int, default=5, help="then this many files dropped one at a time")
    daemon.add_argument("--out", type=Path)

    regions = commands.add_parser("regions", help="a film with N regions vs N patch files: ms per region")
    regions.add_argument("bundle", type=Path)
    regions.add_argument("--counts", type=_ints, default=[1, 2, 4, 8], help="regions per film (default 1,2,4,8)")
    regions.add_argument("--rounds", type=int, default=5, help="alternating rounds of film and patches")
    regions.add_argument("--rows", type=int, default=2048)
    regions.add_argument("--columns", type=int, default=1664)
    regions.add_argument("--variant", default="int8", choices=VARIANTS)
    regions.add_argument("--runtime", default="auto")
    regions.add_argument("--threads", type=int, default=2)
    regions.add_argument("--out", type=Path)

    detect = commands.add_parser(
        "detect", help="the detector on a full-size film (decode to candidates) against one classifier invoke"
    )
    detect.add_argument("bundle", type=Path, help="a bundle with a detector (mammo-convert --detector)")
    detect.add_argument(
        "--against", type=Path, help="the bundle whose classifier invoke is the yardstick (default: BUNDLE's)"
    )
    detect.add_argument("--rounds", type=int, default=10, help="interleaved rounds of detection and invoke")
    detect.add_argument("--rows", type=int, default=4096)
    detect.add_argument("--columns", type=int, default=3328)
    detect.add_argument("--variant", default="int8", choices=VARIANTS, help="the yardstick classifier's variant")
    detect.add_argument("--runtime", default="auto")
    detect.add_argument("--threads", type=int, default=2)
    detect.add_argument("--out", type=Path)

    soak = commands.add_parser("soak", help="the daemon's resident memory after N and M processed scans (flat?)")
    soak.add_argument("bundle", type=Path)
    soak.add_argument("--checkpoints", default="200,2000", help="comma list of processed-scan counts to read RSS at")
    soak.add_argument(
        "--images", type=Path, help="a folder of scans (default: synthetic crops, the bundle's patch size)"
    )
    soak.add_argument("--variant", default="int8", choices=VARIANTS)
    soak.add_argument("--threads", type=int, default=2)
    soak.add_argument("--out", type=Path)

    docs = commands.add_parser("docs", help="write the committed results' figures into the READMEs")
    docs.add_argument("--repo", type=Path, default=Path("."), help="the repository (default: here)")
    docs.add_argument("--check", action="store_true", help="change nothing; exit 1 naming the stale files")

    stage = commands.add_parser("stage", help="run one step of a job (make demo), print and log its wall time")
    stage.add_argument("--log", type=Path, required=True, help="JSON lines, one per stage")
    stage.add_argument("name")
    stage.add_argument("step", nargs=argparse.REMAINDER, help="-- COMMAND ARGS...")

    stages = commands.add_parser("stages", help="every logged stage and the total; --out writes them")
    stages.add_argument("log", type=Path)
    stages.add_argument("--out", type=Path)

    gate = commands.add_parser("gate", help="train and convert K seeds (workstation): how often int8 ships")
    gate.add_argument("--seeds", type=int, default=8, help="seeds 0..K-1")
    gate.add_argument(
        "--recipe",
        choices=("demo", "suite"),
        default="demo",
        help="the demo's recipe, or the test suite's learning check (benchmarks/mammo_bench/gate_stability.py)",
    )
    gate.add_argument("--work", type=Path, required=True, help="folder for the data, runs and bundles")
    gate.add_argument("--out", type=Path, required=True, help="the table (JSON): this recipe's entry replaced")

    ci = commands.add_parser("ci-run", help="`.ci/run` from a clean clone, natively and as on an AVX2-only host")
    ci.add_argument("--repo", type=Path, default=Path("."), help="the repository whose HEAD is cloned (default: here)")
    ci.add_argument("--isa", type=_isas, default=["native", "avx2"], help="comma list of native, avx2")
    ci.add_argument("--out", type=Path, required=True, help="the result file (one run per host kind is kept)")
    ci.add_argument("--logs", type=Path, default=Path("."), help="where each run's output is written")

    mark = commands.add_parser("mark", help="a reader's regions: submit-to-answer against one analysis; view load")
    mark.add_argument("bundle", type=Path)
    mark.add_argument("--variant", default="int8")
    mark.add_argument("--threads", type=int, default=2)
    mark.add_argument("--rounds", type=int, default=10)
    mark.add_argument("--rows", type=int, default=4096, help="the film's rows (a full-field film: 4096)")
    mark.add_argument("--columns", type=int, default=3328)
    mark.add_argument("--out", type=Path)

    everything = commands.add_parser("all", help="latency (+ Keras), pipeline and daemon in one run; summary.md")
    everything.add_argument("bundle", type=Path)
    everything.add_argument("--out", type=Path, required=True, help="folder for the results and summary.md")
    everything.add_argument("--keras", type=Path, metavar="RUN_DIR", help="add the Keras float rows (train extra)")
    everything.add_argument("--variants", type=_names, default=list(VARIANTS))
    everything.add_argument("--threads", type=_ints, default=[1, 2])
    everything.add_argument("--runs", type=int, default=30)
    everything.add_argument("--warmup", type=int, default=3)
    everything.add_argument("--files", type=int, default=30, help="scans for the daemon run")
    everything.add_argument(
        "--images", type=Path, help="a folder of scans (default: synthetic crops, the bundle's patch size)"
    )

    dicom = commands.add_parser("dicom", help="C-STORE into the listener vs dropping the same files: images/s")
    dicom.add_argument("--count", type=int, default=100, help="instances, all in one association (default 100)")
    dicom.add_argument("--rows", type=int, default=1024)
    dicom.add_argument("--columns", type=int, default=832)
    dicom.add_argument("--repeats", type=int, default=3, help="rounds of each way, alternated (default 3)")
    dicom.add_argument("--out", type=Path)

    pacs = commands.add_parser("pacs", help="modality -> Orthanc -> device -> answers in Orthanc: seconds per study")
    pacs.add_argument("bundle", type=Path)
    pacs.add_argument("--studies", type=int, default=5, help="studies of 4 views, one after the other (default 5)")
    pacs.add_argument("--protocol", choices=("dimse", "dicomweb"), default="dimse", help="how the answers go back")
    pacs.add_argument("--rows", type=int, default=2294, help="film rows (default 2294: 0.1 mm pixels)")
    pacs.add_argument("--columns", type=int, default=1914)
    pacs.add_argument("--variant", default="int8")
    pacs.add_argument("--threads", type=int, default=2)
    pacs.add_argument(
        "--settle-seconds", type=float, default=IngestSection.settle_seconds, help="[ingest] (the device's default)"
    )
    pacs.add_argument(
        "--sidecar-wait", type=float, default=IngestSection.sidecar_wait, help="[ingest] (the device's default)"
    )
    pacs.add_argument("--root", type=Path, help="keep Orthanc, the device and their logs here (default: temporary)")
    pacs.add_argument("--screenshot", type=Path, help="Orthanc Explorer's page of the last study (PNG, Chromium)")
    pacs.add_argument("--out", type=Path)

    fleet = commands.add_parser(
        "fleet", help="an Ansible rollout of a new model to N staging devices while they classify: seconds, failures"
    )
    fleet.add_argument("bundle", type=Path)
    fleet.add_argument("--targets", type=int, default=20, help="staging devices (default 20)")
    fleet.add_argument("--batch", type=int, default=5, help="devices per batch after the canary (default 5)")
    fleet.add_argument("--failing", type=int, default=-1, help="the device whose board fails (default: the last)")
    fleet.add_argument("--feed-seconds", type=float, default=2.0, help="each device gets a scan this often")
    fleet.add_argument("--health-seconds", type=int, default=60, help="a restarted service's time to be healthy")
    fleet.add_argument("--root", type=Path, help="keep the devices, inventory and logs here (default: temporary)")
    fleet.add_argument("--out", type=Path)

    page = commands.add_parser("page", help="the results page after N results: regeneration and Chromium load time")
    page.add_argument("--results", type=int, default=5000, help="results already in the folder (default 5000)")
    page.add_argument("--repeats", type=int, default=5)
    page.add_argument("--out", type=Path)

    compare = commands.add_parser("compare", help="exit 1 if RESULT is slower than REFERENCE beyond --tolerance")
    compare.add_argument("result", type=Path)
    compare.add_argument("reference", type=Path)
    compare.add_argument("--tolerance", type=float, default=0.3, help="allowed p50 slow-down (0.3 = 30%%)")

    autotune = commands.add_parser("autotune", help="measure every variant/runtime/threads here; keep the fastest")
    autotune.add_argument("bundle", type=Path)
    autotune.add_argument("--threads", type=_ints, default=None, help="default 1, 2, 4... up to the cores")
    autotune.add_argument("--warmup", type=int, default=3)
    autotune.add_argument("--runs", type=int, default=20)
    autotune.add_argument("--write-config", type=Path, help="the daemon's config.toml to update")
    autotune.add_argument("--out", type=Path)
    return parser


def _finish(content: dict[str, Any], out: Path | None) -> None:
    if out is not None:
        for path in write_outputs(out, content):
            print(f"written {path}")


def _scans(images: Path | None, folder: Path, count: int, bundle: Path) -> list[Path]:
    from mammo_bench.scans import patch_side, scan_files, synthetic_scans

    return scan_files(images) if images is not None else synthetic_scans(folder, count, patch_side(bundle))


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    return {key: str(value) if isinstance(value, Path) else value for key, value in vars(args).items()}


def run_latency(args: argparse.Namespace) -> int:
    from mammo_bench.keras_bench import keras_rows
    from mammo_bench.latency import bundle_cases, bundle_subjects, measure_latency, peer_subjects
    from mammo_bench.peers import calibration_inputs, export_peers, read_peers

    manifest = load_manifest(args.bundle)
    runtime = load_runtime(args.runtime)
    subjects = bundle_subjects(args.bundle, manifest, runtime, bundle_cases(manifest, args.variants, args.threads))
    peers = []
    if args.peers is not None:
        if args.export_peers:
            export_peers(args.bundle, manifest, args.peers, calibration_inputs(manifest, args.calibration))
        peers = read_peers(args.peers)
        subjects += peer_subjects(args.bundle, manifest, args.peers, peers, args.threads)
    rows = measure_latency(subjects, manifest, args.warmup, args.runs, args.max_seconds, not args.no_memory)
    with tempfile.TemporaryDirectory(prefix="mammo-bench-fidelity-") as scratch:
        reference = _fidelity_reference(args, manifest, Path(scratch) / "reference.npz")
        if reference is not None:
            _add_fidelity(rows, args, manifest, runtime, peers, reference)
        if args.tflite_runtime_python is not None:
            rows += _tflite_runtime_rows(args, manifest)
    if args.keras is not None:
        rows = keras_rows(args.keras, args.threads, args.warmup, args.runs, args.max_seconds) + rows
    print(latency_table(rows))
    content = document(
        "latency",
        machine_info(runtime.label),
        _settings(args),
        results=rows,
        process_peak_rss_mb=peak_rss_mb(),
        gate=_gate_thresholds(args.bundle),
    )
    _finish(content, args.out)
    return 0


def _gate_thresholds(bundle: Path) -> dict[str, float] | None:
    """The fidelity thresholds the bundle's variants were held to (its report.json), to judge the other rows by."""
    try:
        thresholds: dict[str, float] = json.loads((bundle / "report.json").read_text())["thresholds"]
    except (OSError, ValueError, KeyError):
        return None
    return thresholds


def _fidelity_reference(args: argparse.Namespace, manifest: Manifest, path: Path) -> FidelityReference | None:
    """The saved reference given, or one built from the bundle's sample (with the Keras heatmaps if --keras) and
    saved at `path`."""
    if args.fidelity_reference is not None:
        return FidelityReference.load(args.fidelity_reference)
    if not args.fidelity:
        return None
    args.fidelity_reference = path  # the tflite-runtime child measures against the same arrays
    return build_reference(args.bundle, manifest, args.fidelity, args.keras, path)


def _add_fidelity(
    rows: list[dict[str, Any]],
    args: argparse.Namespace,
    manifest: Manifest,
    runtime: Runtime,
    peers: list[PeerModel],
    reference: FidelityReference,
) -> None:
    """The fidelity columns of every classifier row, measured once per runtime and variant."""
    from edge_app.model import EdgeModel

    threads = max(args.threads)
    models = {
        (runtime.label, variant): partial(EdgeModel, args.bundle, manifest, variant, runtime, threads)
        for variant in args.variants
        if variant in manifest.variants
    }
    for peer in peers:
        peer_model = partial(
            EdgeModel,
            args.bundle,
            manifest,
            "float32",
            peer_runtime(peer.runtime),
            threads,
            True,
        )
        models[(peer_runtime(peer.runtime).label, peer.variant)] = partial(
            peer_model, opener=peer.opener(args.peers, threads)
        )
    for (label, variant), build in models.items():
        figures = fidelity_figures(build(), reference)
        for row in rows:
            if row["role"] == "classifier" and row["runtime"] == label and row["variant"] == variant:
                row.update(figures)


def _tflite_runtime_rows(args: argparse.Namespace, manifest: Manifest) -> list[dict[str, Any]]:
    """The same table from tflite-runtime, in the environment that has it (numpy < 2): the variants its manifest
    entries say it runs, with the same fidelity reference."""
    runs_there = [
        variant
        for variant in args.variants
        if variant in manifest.variants
        and all(
            outcome == "ok"
            for label, outcome in manifest.classifier(variant)[1].runtimes.items()
            if label.split()[0] == "tflite_runtime"
        )
    ]
    with tempfile.TemporaryDirectory(prefix="mammo-bench-tflite-runtime-") as folder:
        out = Path(folder) / "latency.json"
        command = [str(args.tflite_runtime_python), "-m", "mammo_bench.cli", "latency", str(args.bundle)]
        command += ["--runtime", "tflite_runtime", "--variants", ",".join(runs_there)]
        command += ["--threads", ",".join(map(str, args.threads)), "--warmup", str(args.warmup)]
        command += ["--runs", str(args.runs), "--max-seconds", str(args.max_seconds), "--out", str(out)]
        command += ["--no-memory"] if args.no_memory else []
        if args.fidelity_reference is not None:
            command += ["--fidelity-reference", str(args.fidelity_reference)]
        completed = subprocess.run(command, capture_output=True, text=True, check=False)
        if completed.returncode != 0:
            tail = completed.stderr.strip().splitlines()[-1:] or ["no output"]
            raise MeasurementError(f"the tflite-runtime rows failed in {args.tflite_runtime_python}: {tail[0]}")
        rows: list[dict[str, Any]] = json.loads(out.read_text())["results"]
    return rows


def run_keras(args: argparse.Namespace) -> int:
    from mammo_bench.keras_bench import keras_rows

    rows = keras_rows(args.run, args.threads, args.warmup, args.runs, args.max_seconds)
    print(latency_table(rows))
    _finish(document("keras", machine_info(), _settings(args), results=rows), args.out)
    return 0


def run_pipeline(args: argparse.Namespace) -> int:
    from edge_app.model import EdgeModel
    from mammo_bench.pipeline import measure_pipeline

    model = EdgeModel.load(args.bundle, args.variant, args.runtime, args.threads)
    with tempfile.TemporaryDirectory(prefix="mammo-bench-scans-") as folder:
        figures = measure_pipeline(model, _scans(args.images, Path(folder), 8, args.bundle), args.rounds)
    for stage, stats in figures["stages"].items():
        print(f"{stage.removesuffix('_ms'):<12} p50 {stats['p50_ms']:9.2f} ms  mean {stats['mean_ms']:9.2f} ms")
    print(
        f"probability only p50 {figures['probability_only']['p50_ms']:.2f} ms; with heatmap "
        f"{figures['probability_heatmap']['p50_ms']:.2f} ms; ratio {figures['heatmap_cost_ratio']:.3f}"
    )
    _finish(document("pipeline", machine_info(model.runtime.label), _settings(args), pipeline=figures), args.out)
    return 0


def run_daemon(args: argparse.Namespace) -> int:
    from mammo_bench.daemon_bench import measure_daemon

    load_manifest(args.bundle)  # refuse a bad bundle here, with its reason, before starting a daemon
    with tempfile.TemporaryDirectory(prefix="mammo-bench-scans-") as folder:
        scans = _scans(args.images, Path(folder), min(args.files, 16), args.bundle)
        figures = measure_daemon(
            args.bundle, scans, args.files, args.variant, args.threads, args.settle_seconds, args.interval, args.singles
        )
    print(json.dumps(figures, indent=2))
    _finish(document("daemon", machine_info(), _settings(args), daemon=figures), args.out)
    return 0


def run_regions(args: argparse.Namespace) -> int:
    from edge_app.model import EdgeModel
    from mammo_bench.regions_bench import measure_regions

    model = EdgeModel.load(args.bundle, args.variant, args.runtime, args.threads)
    figures = measure_regions(model, args.counts, args.rounds, args.rows, args.columns)
    for count, row in figures["per_count"].items():
        film, patches = row["film_ms_per_region"], row["patches_ms_per_region"]
        print(f"N={count:>2}: film {film:8.2f} ms/region, patches {patches:8.2f} ms/region, ratio {row['ratio']:.3f}")
    _finish(document("regions", machine_info(model.runtime.label), _settings(args), regions=figures), args.out)
    return 0


def run_detect(args: argparse.Namespace) -> int:
    from mammo_bench.detect_bench import measure_detection

    figures = measure_detection(
        args.bundle,
        args.against or args.bundle,
        args.variant,
        args.runtime,
        args.threads,
        args.rows,
        args.columns,
        args.rounds,
    )
    parts = ", ".join(f"{name} {value:.1f}" for name, value in figures["detection_ms"].items())
    print(
        f"detection on a {args.columns}x{args.rows} film: {parts} ms; one {figures['against']['input_size']} px "
        f"classifier invoke {figures['classifier_invoke_ms']:.1f} ms; ratio {figures['ratio']:.2f}; "
        f"peak RSS {figures['peak_rss_mb']:.0f} MB"
    )
    _finish(document("detect", machine_info(), _settings(args), detect=figures), args.out)
    return 0


def run_soak(args: argparse.Namespace) -> int:
    from mammo_bench.daemon_bench import measure_memory_growth

    load_manifest(args.bundle)
    checkpoints = tuple(sorted({int(value) for value in args.checkpoints.split(",") if value.strip()}))
    if not checkpoints or checkpoints[0] < 1:
        raise DataError(f"--checkpoints must be positive counts, got {args.checkpoints!r}")
    with tempfile.TemporaryDirectory(prefix="mammo-bench-scans-") as folder:
        scans = _scans(args.images, Path(folder), 16, args.bundle)
        figures = measure_memory_growth(args.bundle, scans, checkpoints, args.variant, args.threads)
    print(json.dumps(figures, indent=2))
    _finish(document("soak", machine_info(), _settings(args), soak=figures), args.out)
    return 0


def run_dicom(args: argparse.Namespace) -> int:
    from mammo_bench.dicom_bench import measure_dicom_intake

    if min(args.count, args.rows, args.columns, args.repeats) < 1:
        raise DataError("--count, --rows, --columns and --repeats must be positive")
    figures = measure_dicom_intake(args.count, args.rows, args.columns, args.repeats)
    print(json.dumps(figures, indent=2))
    _finish(document("dicom", machine_info(), _settings(args), dicom=figures), args.out)
    return 0


def run_pacs(args: argparse.Namespace) -> int:
    from mammo_bench.pacs_bench import measure_pacs

    if min(args.studies, args.rows, args.columns, args.threads) < 1:
        raise DataError("--studies, --rows, --columns and --threads must be positive")
    if min(args.settle_seconds, args.sidecar_wait) < 0:
        raise DataError("--settle-seconds and --sidecar-wait must be >= 0")
    ingest = IngestSection(settle_seconds=args.settle_seconds, sidecar_wait=args.sidecar_wait)
    settings = (args.bundle, args.studies, args.protocol)
    with contextlib.ExitStack() as stack:
        root = args.root or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="mammo-bench-pacs-")))
        figures = measure_pacs(
            *settings, root, args.rows, args.columns, args.variant, args.threads, ingest, args.screenshot
        )
    print(json.dumps(figures, indent=2))
    _finish(document("pacs", machine_info(), _settings(args), pacs=figures), args.out)
    return 0


def run_fleet(args: argparse.Namespace) -> int:
    from mammo_bench.fleet import measure_fleet

    if min(args.targets, args.batch, args.health_seconds) < 1 or args.feed_seconds <= 0:
        raise DataError("--targets, --batch, --health-seconds and --feed-seconds must be positive")
    failing = args.failing % args.targets
    with contextlib.ExitStack() as stack:
        root = args.root or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="mammo-bench-fleet-")))
        root.mkdir(parents=True, exist_ok=True)
        figures = measure_fleet(
            args.bundle, root, args.targets, args.batch, failing, args.feed_seconds, args.health_seconds
        )
    print(json.dumps(figures, indent=2))
    _finish(document("fleet", machine_info(), _settings(args), fleet=figures), args.out)
    return 0


def run_page(args: argparse.Namespace) -> int:
    from mammo_bench.page_bench import measure_results_page

    if args.results < 1 or args.repeats < 1:
        raise DataError("--results and --repeats must be positive")
    figures = measure_results_page(args.results, args.repeats)
    print(json.dumps(figures, indent=2))
    _finish(document("page", machine_info(), _settings(args), page=figures), args.out)
    return 0


def run_docs(args: argparse.Namespace) -> int:
    from mammo_bench.docs import stale, write

    if args.check:
        outdated = stale(args.repo)
        for name in outdated:
            print(f"{name}: its figures differ from the committed results (run `mammo-bench docs`)")
        return 1 if outdated else 0
    for name in write(args.repo):
        print(f"written {name}")
    return 0


def run_stage(args: argparse.Namespace) -> int:
    from mammo_bench.stages import run_stage as run_one

    step = args.step[1:] if args.step[:1] == ["--"] else args.step
    return run_one(args.log, args.name, step)


def run_stages(args: argparse.Namespace) -> int:
    from mammo_bench.stages import read_stages, stages_table

    logged = read_stages(args.log)
    print(stages_table(logged))
    _finish(document("stages", machine_info(), _settings(args), stages=logged), args.out)
    return 0


def run_gate(args: argparse.Namespace) -> int:
    from mammo_bench.gate_stability import RECIPES, measure_gate_stability, record_recipe

    if args.seeds < 1:
        raise DataError(f"--seeds must be >= 1, got {args.seeds}")
    figures = measure_gate_stability(args.work, RECIPES[args.recipe], list(range(args.seeds)))
    print(json.dumps(figures["summary"], indent=2))
    measured = document("gate", machine_info(), _settings(args), **figures)
    _finish(record_recipe(args.out, args.recipe, measured), args.out)
    return 0


def run_ci(args: argparse.Namespace) -> int:
    from mammo_bench.ci_run import clean_clone_run, record_runs

    runs = []
    args.logs.mkdir(parents=True, exist_ok=True)  # made, as every tool here makes the folders it writes to
    for isa in args.isa:
        log = args.logs / f"ci-run-{isa}.log"
        print(f"{isa}: .ci/run from a clean clone (output: {log}) ...", flush=True)
        run = clean_clone_run(args.repo.resolve(), isa, log)
        print(json.dumps(run), flush=True)
        runs.append(run)
    record_runs(args.out, runs)
    return 0 if all(run["exit_code"] == 0 for run in runs) else 1


def run_mark(args: argparse.Namespace) -> int:
    from mammo_bench.mark_bench import measure_mark

    if min(args.rounds, args.rows, args.columns, args.threads) < 1:
        raise DataError("--rounds, --rows, --columns and --threads must be positive")
    figures = measure_mark(args.bundle, args.variant, args.threads, args.rounds, args.rows, args.columns)
    print(json.dumps(figures, indent=2))
    _finish(document("mark", machine_info(), _settings(args), mark=figures), args.out)
    return 0


def run_compare(args: argparse.Namespace) -> int:
    from mammo_bench.compare import compare_results, comparison_table, exit_code

    try:
        result, reference = (json.loads(Path(path).read_text()) for path in (args.result, args.reference))
        comparisons = compare_results(result, reference)
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(str(exc)) from exc
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise DataError(f"not a mammo-bench latency file ({type(exc).__name__}: {exc})") from exc
    if not comparisons:
        raise DataError(
            "no row of the result matches the reference (model, architecture, input size, variant, threads, runtime)"
        )
    print(comparison_table(comparisons, args.tolerance))
    return exit_code(comparisons, args.tolerance)


def run_autotune(args: argparse.Namespace) -> int:
    from mammo_bench.autotune import fastest, measure_choices, thread_candidates, write_choice

    manifest = load_manifest(args.bundle)
    runtimes = installed_runtimes()
    rows = measure_choices(
        args.bundle, manifest.variants, runtimes, args.threads or thread_candidates(), args.warmup, args.runs
    )
    for row in rows:
        outcome = f"p50 {row['p50_ms']:.2f} ms" if "p50_ms" in row else f"refused: {row['refused']}"
        print(f"{row['runtime']:<15} {row['variant']:<8} threads {row['threads']:<3} {outcome}")
    best = fastest(rows)
    print(f"fastest: {best['variant']} on {best['runtime']} with {best['threads']} threads ({best['p50_ms']:.2f} ms)")
    if args.write_config is not None:
        backup = write_choice(args.write_config, args.bundle, best)
        print(f"written {args.write_config}" + (f" (previous kept as {backup})" if backup else ""))
    _finish(document("autotune", machine_info(), _settings(args), choices=rows, fastest=best), args.out)
    return 0


def run_all(args: argparse.Namespace) -> int:
    """The acceptance run: every variant and Keras side by side, the per-scan path and the daemon, one summary."""
    from mammo_bench.summary import summary_markdown

    out: Path = args.out
    shipped = load_manifest(args.bundle).variants
    device_variant = "int8" if "int8" in shipped else "float32"  # what the device runs by default, if verified
    common = ["--threads", ",".join(map(str, args.threads)), "--runs", str(args.runs), "--warmup", str(args.warmup)]
    latency = ["latency", str(args.bundle), "--variants", ",".join(args.variants), *common]
    latency += ["--out", str(out / "latency.json")] + (["--keras", str(args.keras)] if args.keras else [])
    images = ["--images", str(args.images)] if args.images else []
    steps = [
        latency,
        [
            "pipeline",
            str(args.bundle),
            "--variant",
            device_variant,
            "--threads",
            str(max(args.threads)),
            *images,
            "--out",
            str(out / "pipeline.json"),
        ],
        [
            "daemon",
            str(args.bundle),
            "--variant",
            device_variant,
            "--threads",
            str(max(args.threads)),
            "--files",
            str(args.files),
            *images,
            "--out",
            str(out / "daemon.json"),
        ],
    ]
    for step in steps:
        print(f"== mammo-bench {' '.join(step)}")
        code = COMMANDS[step[0]](build_parser().parse_args(step))
        if code:
            return code
    loaded = [json.loads((out / f"{name}.json").read_text()) for name in ("latency", "pipeline", "daemon")]
    summary = summary_markdown(loaded[0], loaded[1]["pipeline"], loaded[2]["daemon"])
    (out / "summary.md").write_text(summary)
    print(summary)
    return 0


COMMANDS = {
    "latency": run_latency,
    "keras": run_keras,
    "pipeline": run_pipeline,
    "daemon": run_daemon,
    "all": run_all,
    "compare": run_compare,
    "autotune": run_autotune,
    "soak": run_soak,
    "regions": run_regions,
    "detect": run_detect,
    "docs": run_docs,
    "stage": run_stage,
    "stages": run_stages,
    "gate": run_gate,
    "ci-run": run_ci,
    "mark": run_mark,
    "dicom": run_dicom,
    "pacs": run_pacs,
    "fleet": run_fleet,
    "page": run_page,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_main(f"mammo-bench {args.command}", lambda: COMMANDS[args.command](args))


if __name__ == "__main__":
    sys.exit(main())
