"""``mammo-edge``: run the watched-folder daemon, classify files now, check the configuration, show status.

Exit codes: 0 success, 1 some scans were rejected (``once``), 2 configuration or model bundle refused.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edge_app.config import Config, resolve_config
from edge_app.errors import InputImageError, MammoEdgeError
from edge_app.model import EdgeModel

log = logging.getLogger("mammo-edge")
SCAN_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".pgm", ".ppm", ".dcm", ".dicom")


def setup_logging(level: str) -> None:
    """stderr; under systemd (JOURNAL_STREAM) journald adds time and unit, and reads the <N> priority prefix."""
    handler = logging.StreamHandler(sys.stderr)
    if os.environ.get("JOURNAL_STREAM"):
        priorities = {"DEBUG": 7, "INFO": 6, "WARNING": 4, "ERROR": 3, "CRITICAL": 2}

        class _Journald(logging.Formatter):
            def format(self, record: logging.LogRecord) -> str:
                return f"<{priorities.get(record.levelname, 6)}>{super().format(record)}"

        handler.setFormatter(_Journald("%(message)s"))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    root = logging.getLogger("mammo-edge")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def _config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, default=None, help="TOML file (default /etc/mammo-edge/config.toml)")
    parser.add_argument("--bundle", type=Path, help="[model] bundle")
    parser.add_argument("--variant", help="[model] variant")
    parser.add_argument("--runtime", help="[model] runtime: auto, ai_edge_litert, tflite_runtime, tensorflow")
    parser.add_argument("--threads", type=int, help="[model] threads")
    for folder in ("inbox", "results", "archive", "quarantine", "state"):
        parser.add_argument(f"--{folder}", type=Path, help=f"[paths] {folder}")
    parser.add_argument("--settle-seconds", type=float, help="[ingest] settle_seconds")
    parser.add_argument("--polling", action="store_true", default=None, help="[ingest] polling observer")


def _overrides(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    def given(**values: Any) -> dict[str, Any]:
        return {key: value for key, value in values.items() if value is not None}

    return {
        "model": given(bundle=args.bundle, variant=args.variant, runtime=args.runtime, threads=args.threads),
        "paths": given(
            **{name: getattr(args, name) for name in ("inbox", "results", "archive", "quarantine", "state")}
        ),
        "ingest": given(settle_seconds=args.settle_seconds, polling=args.polling),
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mammo-edge", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for name, text in (
        ("run", "watch the inbox and classify every scan dropped there"),
        ("check-config", "validate and print the effective configuration"),
        ("status", "counts, the last result and the model"),
    ):
        command = commands.add_parser(name, help=text)
        _config_arguments(command)
        if name == "run":
            command.add_argument("--exit-when-idle", action="store_true", help="stop once the inbox is empty")
    once = commands.add_parser("once", help="classify files or folders now and print a table")
    once.add_argument("inputs", nargs="+", type=Path)
    once.add_argument("--model", type=Path, required=True, help="model bundle folder")
    once.add_argument("--results", type=Path, default=Path("."), help="where results are written (default: here)")
    once.add_argument("--variant", default="int8")
    once.add_argument("--runtime", default="auto")
    once.add_argument("--threads", type=int, default=2)
    return parser


def _load_model(config: Config) -> EdgeModel:
    model = config.model
    return EdgeModel.load(model.bundle, model.variant, model.runtime, model.threads, model.heatmaps)


def run_command(args: argparse.Namespace) -> int:
    from edge_app.daemon import Daemon, install_signal_handlers, outcome_table

    stopping = threading.Event()
    install_signal_handlers(stopping)
    config = resolve_config(args.config, _overrides(args))
    setup_logging(config.log.level)
    daemon = Daemon(config, _load_model(config), args.exit_when_idle, stopping)
    code = daemon.run()
    if args.exit_when_idle and daemon.outcomes:
        print(outcome_table(daemon.outcomes, config.paths.results))
    return code


def check_config_command(args: argparse.Namespace) -> int:
    from edge_app.manifest import load_manifest

    config = resolve_config(args.config, _overrides(args))
    print(config.to_toml())
    manifest = load_manifest(config.model.bundle)
    manifest.classifier(config.model.variant)
    print(
        f"# model bundle OK: {manifest.name} {manifest.version} ({manifest.architecture}, "
        f"variants {', '.join(manifest.variants)})"
    )
    return 0


def status_command(args: argparse.Namespace) -> int:
    from edge_app.journal import Journal
    from edge_app.manifest import load_manifest

    config = resolve_config(args.config, _overrides(args))
    journal_path = config.paths.state / "journal.sqlite3"
    if not journal_path.exists():
        print(f"no scans yet (no journal at {journal_path})")
    else:
        journal = Journal(journal_path)
        counts = journal.counts()
        last = journal.last()
        journal.close()
        print("counts: " + ", ".join(f"{key} {value}" for key, value in sorted(counts.items())))
        if last:
            print(
                f"last: {last.input_name} -> {last.status} {last.label or ''} "
                f"{'' if last.probability is None else f'p={last.probability:.3f}'}".rstrip()
            )
    waiting = [p for p in config.paths.inbox.glob("*") if p.is_file()] if config.paths.inbox.is_dir() else []
    print(f"inbox: {len(waiting)} file(s) waiting")
    manifest = load_manifest(config.model.bundle, verify_files=False)
    print(f"model: {manifest.name} {manifest.version} ({manifest.architecture}, threshold {manifest.threshold:.3f})")
    return 0


def _expand(inputs: Sequence[Path]) -> list[Path]:
    files: list[Path] = []
    for item in inputs:
        if item.is_dir():
            files += sorted(p for p in item.iterdir() if p.is_file() and p.suffix.lower() in SCAN_SUFFIXES)
        else:
            files.append(item)
    return files


def once_command(args: argparse.Namespace) -> int:
    from edge_app.fsutil import unique_stem
    from edge_app.results import analyse, result_document, write_result

    model = EdgeModel.load(args.model, args.variant, args.runtime, args.threads)
    args.results.mkdir(parents=True, exist_ok=True)
    rows: list[tuple[str, str, str, str]] = []
    failed, taken = 0, set[str]()
    for path in _expand(args.inputs):
        try:
            analysis = analyse(path.read_bytes(), model)
        except (InputImageError, OSError) as exc:
            rows.append((path.name, "REJECTED", "", str(exc)))
            failed += 1
            continue
        stem = unique_stem(args.results, path.stem, (".json", ".gradcam.png"), taken)
        taken.add(stem)
        heatmap = f"{stem}.gradcam.png" if analysis.overlay_png is not None else None
        document = result_document(stem, path.name, analysis, model, heatmap, None)
        write_result(args.results, stem, document, analysis.overlay_png)
        prediction = analysis.prediction
        rows.append(
            (
                path.name,
                prediction.label,
                f"{prediction.probability:.4f}",
                str(args.results / heatmap) if heatmap else "",
            )
        )
    width = max([len(row[0]) for row in rows] + [5])
    print(f"{'input':<{width}}  {'label':<9} {'p(malig)':>8}  overlay / reason")
    for name, label, probability, detail in rows:
        print(f"{name:<{width}}  {label:<9} {probability:>8}  {detail}")
    print(
        f"model {model.manifest.name} {model.manifest.version} ({model.variant}, {model.runtime.label}); "
        f"threshold {model.manifest.threshold:.3f}. Research use only: not for clinical use."
    )
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    commands = {
        "run": run_command,
        "check-config": check_config_command,
        "status": status_command,
        "once": once_command,
    }
    try:
        return commands[args.command](args)
    except MammoEdgeError as exc:
        print(f"mammo-edge {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
