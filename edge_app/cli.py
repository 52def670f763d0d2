"""``mammo-edge``: run the watched-folder daemon, classify files now, check the configuration, show status.

Exit codes: 0 success, 1 some scans were rejected or need regions (``once``), 2 refused (configuration, model bundle
or input), 3 the analysis service is not healthy (``health``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pydicom.config

from edge_app.config import Config, resolve_config
from edge_app.decode import DEFAULT_MAX_PIXELS, SCAN_SUFFIXES
from edge_app.detect import Candidate
from edge_app.errors import (
    EXIT_OK,
    EXIT_SOME_REJECTED,
    EXIT_UNHEALTHY,
    BundleError,
    DataError,
    MammoEdgeError,
    MissingInputError,
    run_main,
)
from edge_app.model import EdgeModel, ModelIdentity
from edge_app.proposals import FilmDetector
from edge_app.regions import sidecar_kind, sidecar_names
from edge_app.report.page import CARD, INDEX, PageContext, ResultsPage, operating_point
from edge_app.scope import ScopeLimits
from edge_app.service.analyse import ModelAnalyser, Sidecar
from edge_app.service.journal import Journal
from edge_app.service.writer import AnswerSink
from edge_app.signing import check_signature
from edge_app.systemd import SERVICE_UNIT, restart_service

log = logging.getLogger(__name__)


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
    root = logging.getLogger("edge_app")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # The DICOM libraries would otherwise log (and warn) header values they find invalid: a patient's name or date
    # must never reach the device's logs. Their errors still do, through the device's own messages.
    pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE
    pydicom.config.settings.writing_validation_mode = pydicom.config.IGNORE  # answers copy the scan's values
    logging.getLogger("pydicom").setLevel(logging.ERROR)
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)


def _config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, default=None, help="TOML file (default /etc/mammo-edge/config.toml)")
    parser.add_argument("--bundle", type=Path, help="[model] bundle")
    parser.add_argument("--variant", help="[model] variant")
    parser.add_argument("--runtime", help="[model] runtime: auto, ai_edge_litert, tflite_runtime, tensorflow")
    parser.add_argument("--threads", type=int, help="[model] threads")
    for folder in ("inbox", "results", "archive", "quarantine", "state", "outbox"):
        parser.add_argument(f"--{folder}", type=Path, help=f"[paths] {folder}")
    parser.add_argument("--settle-seconds", type=float, help="[ingest] settle_seconds")
    parser.add_argument("--sidecar-wait", type=float, help="[ingest] sidecar_wait")
    parser.add_argument("--polling", action="store_true", default=None, help="[ingest] polling observer")


def _overrides(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    def given(**values: Any) -> dict[str, Any]:
        return {key: value for key, value in values.items() if value is not None}

    return {
        "model": given(bundle=args.bundle, variant=args.variant, runtime=args.runtime, threads=args.threads),
        "paths": given(
            **{name: getattr(args, name) for name in ("inbox", "results", "archive", "quarantine", "state", "outbox")}
        ),
        "ingest": given(settle_seconds=args.settle_seconds, sidecar_wait=args.sidecar_wait, polling=args.polling),
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mammo-edge", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for name, text in (
        ("run", "watch the inbox and classify every scan dropped there"),
        ("check-config", "validate and print the effective configuration"),
        ("status", "counts, the last result, the outbox and the model"),
        ("dicom-listen", "receive DICOM over the network into the inbox ([dicom] in the config)"),
        ("dicom-forward", "send the DICOM answers in the outbox to [dicom.forward]"),
        ("dicom-requeue", "put the answers the destination refused for good back in the outbox (once fixed)"),
        ("health", "whether the analysis service's loop ticks and works (exit 0) or not (exit 3), in one line"),
    ):
        command = commands.add_parser(name, help=text)
        _config_arguments(command)
        if name == "run":
            command.add_argument("--exit-when-idle", action="store_true", help="stop once the inbox is empty")
        if name == "health":
            command.add_argument(
                "--model-version", help="healthy only once the service serves this model version (after a restart)"
            )
    model = commands.add_parser("model", help="install, roll back or list the model versions on this device")
    actions = model.add_subparsers(dest="action", required=True)
    for action, text in (
        ("install", "verify a bundle (hashes, schema, self-test) and make it the live model"),
        ("rollback", "make the previous model live again"),
        ("list", "the installed model versions, and which is live"),
    ):
        command = actions.add_parser(action, help=text)
        if action == "install":
            command.add_argument("source", type=Path, help="a bundle folder written by mammo-convert")
        _config_arguments(command)
        command.add_argument("--no-restart", action="store_true", help="do not restart mammo-edge.service")
    selftest = commands.add_parser("selftest", help="run the live model on its bundle's own sample, and one scan")
    _config_arguments(selftest)
    selftest.add_argument("--all", action="store_true", help="every image of the sample (default: the first 16)")
    selftest.add_argument("--json", type=Path, help="also write the figures here (the Arm check reads them)")
    serve = commands.add_parser("serve", help="the reader's web app: results pages and the marking view ([web])")
    _config_arguments(serve)
    for noun, verbs, text in (
        ("web-user", ("add", "remove", "list"), "reader accounts of the web app (passwords hashed with Argon2id)"),
        ("web-token", ("add", "revoke", "list"), "tokens programs use with the web app's API (only hashes kept)"),
    ):
        group = commands.add_parser(noun, help=text).add_subparsers(dest="action", required=True)
        for action in verbs:
            command = group.add_parser(action)
            if action != "list":
                command.add_argument("name")
            if noun == "web-user" and action == "add":
                command.add_argument(
                    "--password-file", type=Path, help="read the password from this file (- : standard input)"
                )
            _config_arguments(command)
    dropin = commands.add_parser("network-dropin", help="print the systemd drop-in allowing a network unit its peers")
    dropin.add_argument("unit", choices=("listen", "forward", "web"))
    dropin.add_argument("--config", type=Path, default=None, help="TOML file (default /etc/mammo-edge/config.toml)")
    once = commands.add_parser("once", help="classify files or folders now and print a table")
    once.add_argument("inputs", nargs="+", type=Path)
    once.add_argument("--model", type=Path, required=True, help="model bundle folder")
    once.add_argument("--results", type=Path, default=Path("."), help="where results are written (default: here)")
    once.add_argument("--variant", default="int8")
    once.add_argument("--runtime", default="auto")
    once.add_argument("--threads", type=int, default=2)
    once.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS, help="refuse larger images unread")
    for flag, kind, text in (
        ("--min-side-px", int, "[scope] min_side_px"),
        ("--max-side-px", int, "[scope] max_side_px"),
        ("--max-extent-mm", float, "[scope] max_extent_mm"),
    ):
        once.add_argument(flag, type=kind, default=0, help=f"{text} (default 0: derived from the bundle)")
    once.add_argument(
        "--roi",
        type=Path,
        help="the regions of the one scan given (.roi.json or mask image); default: NAME.roi.json / NAME.mask.png "
        "beside the scan",
    )
    return parser


def _load_analyser(config: Config, explain_later: bool = False) -> ModelAnalyser:
    """The configured model. The bundle path is resolved once: a `model install` that switches the link while the
    service runs changes nothing under it until the restart (every file it reads is the version it loaded).
    `explain_later`: the daemon's, whose overlay lane explains each analysis (`ModelAnalyser`)."""
    model = config.model
    check_signature(model.bundle.resolve(), model.trusted_keys)
    loaded = EdgeModel.load(model.bundle.resolve(), model.variant, model.runtime, model.threads, model.heatmaps)
    scope = config.scope
    limits = ScopeLimits.resolve(loaded.manifest.scope, scope.min_side_px, scope.max_side_px, scope.max_extent_mm)
    detector = FilmDetector.load(loaded.bundle, loaded.manifest, loaded.runtime, model.threads)
    return ModelAnalyser(loaded, config.ingest.max_pixels, limits, detector, config.regions, explain_later)


def _answer_sinks(config: Config, identity: ModelIdentity) -> tuple[AnswerSink, ...]:
    """The DICOM report and capture of every analysed DICOM scan (queued for forwarding when a host is set)."""
    if not config.dicom.answers:
        return ()
    from edge_app.dicom.answers import DicomAnswerWriter
    from edge_app.dicom.outbox import Outbox

    outbox = Outbox(config.paths.outbox) if config.dicom.forward.enabled else None
    return (DicomAnswerWriter(config.paths.results, identity, outbox),)


def _start_service(args: argparse.Namespace) -> tuple[Config, threading.Event]:
    """What every long-running command does first: stop cleanly on SIGTERM/SIGINT (even during start-up), resolve
    the configuration once, set up the device's logging."""
    from edge_app.service.daemon import install_signal_handlers

    stopping = threading.Event()
    install_signal_handlers(stopping)
    config = resolve_config(args.config, _overrides(args))
    setup_logging(config.log.level)
    return config, stopping


def _results_page(results: Path, model: EdgeModel, bundle: Path) -> ResultsPage:
    """The page regenerated after every result, stamped with the model and its operating point; it links the
    bundle's model card (copied beside it)."""
    card = bundle / CARD
    context = PageContext(
        model.identity,
        operating_point(model.manifest.metrics),
        card if card.is_file() else None,
        model.manifest.heat_scale,
    )
    return ResultsPage(results, context)


def run_command(args: argparse.Namespace) -> int:
    from edge_app.service import process
    from edge_app.service.coalesce import CoalescedTask
    from edge_app.service.daemon import Daemon, journal_path, outcome_table

    config, stopping = _start_service(args)
    process.for_lanes()
    analyser = _load_analyser(config, explain_later=True)
    sinks = _answer_sinks(config, analyser.identity)
    page = _results_page(config.paths.results, analyser.model, analyser.model.bundle)
    page.update()  # the page names the model now serving, before the first scan
    with CoalescedTask(page.update, "results-page") as page_updates:  # off the scans' path
        daemon = Daemon(
            config,
            analyser,
            args.exit_when_idle,
            stopping,
            sinks=sinks,
            after_write=(page_updates.request,),
            model_check=analyser.model.disk_changes,
        )
        if config.dicom.forward.enabled:
            from edge_app.dicom.outbox import Outbox, OutboxCollector

            daemon.metrics.registry.register(OutboxCollector(Outbox(config.paths.outbox)))
        summary = daemon.run()
    if args.exit_when_idle and summary.counts:
        journal = Journal(journal_path(config))
        try:
            print(outcome_table(journal.since(summary.started), config.paths.results))
        finally:
            journal.close()
    return EXIT_OK


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
    return EXIT_OK


def status_command(args: argparse.Namespace) -> int:
    from edge_app.manifest import load_manifest
    from edge_app.service.daemon import journal_path

    config = resolve_config(args.config, _overrides(args))
    path = journal_path(config)
    if not path.exists():
        print(f"no scans yet (no journal at {path})")
    else:
        journal = Journal(path)
        try:
            counts, last = journal.counts(), journal.last_finished()
        finally:
            journal.close()
        print("counts: " + ", ".join(f"{key} {value}" for key, value in sorted(counts.items())))
        if last:
            detail = f"{last.label} p={last.probability:.3f}" if last.probability is not None else ""
            print(f"last: {last.input_name} -> {last.state.value} {detail}".rstrip())
    waiting = [p for p in config.paths.inbox.glob("*") if p.is_file()] if config.paths.inbox.is_dir() else []
    sidecars = sum(sidecar_kind(p.name) is not None for p in waiting)
    print(f"inbox: {len(waiting) - sidecars} scan(s) waiting, {sidecars} region file(s) waiting for their scan")
    if config.dicom.forward.enabled:
        print(_outbox_line(config))
    manifest = load_manifest(config.model.bundle, verify_files=False)
    print(f"model: {manifest.name} {manifest.version} ({manifest.architecture}, threshold {manifest.threshold:.3f})")
    print(f"results page: {config.paths.results / INDEX}")
    card = config.model.bundle / CARD
    print(f"model card: {card}" if card.is_file() else f"model card: none in {config.model.bundle} (an older bundle)")
    return EXIT_OK


def health_command(args: argparse.Namespace) -> int:
    """What /healthz answers, for a device without the web app and for a rollout waiting on a restart."""
    from edge_app.service.health import device_health

    config = resolve_config(args.config, _overrides(args))
    health = device_health(config.paths.state, args.model_version)
    print(health.reason)
    return EXIT_OK if health.healthy else EXIT_UNHEALTHY


def _outbox_line(config: Config) -> str:
    from edge_app.dicom.outbox import Outbox

    state = Outbox(config.paths.outbox).state()
    forward = config.dicom.forward
    line = f"outbox to {forward.destination}: {state.pending} pending, {state.sent} sent"
    if state.oldest_pending is not None:
        line += f", oldest waiting {time.time() - state.oldest_pending:.0f} s"
    if state.last_error is not None and state.pending:
        line += f", last error: {state.last_error}"
    if state.rejected:
        line += f", {state.rejected} refused for good (last: {state.last_rejection}"
        line += "; `mammo-edge dicom-requeue` once fixed)"
    return line


def dicom_listen_command(args: argparse.Namespace) -> int:
    from edge_app.dicom.listen import StorageListener
    from edge_app.service.daemon import journal_path

    config, stopping = _start_service(args)
    StorageListener(config.dicom, config.paths.inbox, journal_path(config)).serve(stopping)
    return EXIT_OK


def dicom_forward_command(args: argparse.Namespace) -> int:
    from edge_app.dicom.forward import Forwarder
    from edge_app.dicom.outbox import Outbox

    config, stopping = _start_service(args)
    config.dicom.forward.require_destination("there is nowhere to forward to")
    outbox = Outbox(config.paths.outbox)
    pruned = outbox.prune_sent(config.journal.retention_days)
    if pruned:
        log.info("forgot %d answer(s) sent more than %s days ago", pruned, config.journal.retention_days)
    Forwarder(config.dicom, outbox).run(stopping)
    return EXIT_OK


def dicom_requeue_command(args: argparse.Namespace) -> int:
    from edge_app.dicom.outbox import Outbox

    config = resolve_config(args.config, _overrides(args))
    config.dicom.forward.require_destination("there is nowhere to forward to")
    names = Outbox(config.paths.outbox).requeue_rejected()
    print(f"{len(names)} answer(s) back in the outbox for {config.dicom.forward.destination}")
    return EXIT_OK


def model_command(args: argparse.Namespace) -> int:
    from edge_app.manifest import load_manifest
    from edge_app.store import ModelStore

    config = resolve_config(args.config, _overrides(args))
    setup_logging(config.log.level)
    model = config.model
    store = ModelStore(model.bundle, model.variant, model.runtime, model.threads, model.trusted_keys)
    if args.action == "list":
        versions = store.versions()
        if not versions:
            print(f"no model installed beside {model.bundle}")
        for item in versions:
            mark = "live" if item.live else "previous" if item.previous else ""
            manifest = load_manifest(item.path, verify_files=False)
            print(f"{item.version:<24} {mark:<8} {manifest.architecture} {manifest.created} {item.path}")
        return EXIT_OK
    switch = store.install(args.source) if args.action == "install" else store.rollback()
    print(switch.selftest.line())
    print(f"model {switch.live} is live; previous: {switch.previous or 'none'}")
    if not args.no_restart:
        print(restart_service(SERVICE_UNIT))
    return EXIT_OK


def selftest_command(args: argparse.Namespace) -> int:
    """The live model on its bundle's own sample, then one of those images as a scan through the daemon's analyser
    (decode, scope, preprocess, model, overlay): what an install ends with."""
    from edge_app.selftest import QUICK_IMAGES, run_selftest, sample_scan

    config = resolve_config(args.config, _overrides(args))
    setup_logging(config.log.level)
    analyser = _load_analyser(config)
    report = run_selftest(analyser.model, None if args.all else QUICK_IMAGES)
    print(report.line())
    if args.json is not None:
        args.json.write_text(json.dumps(report.figures(analyser.model), indent=2) + "\n")
    if report.failures:
        raise BundleError("; ".join(report.failures))
    analysis = analyser.analyse(sample_scan(analyser.model.bundle, analyser.model.manifest), "selftest.png", None)
    overlay = 0 if analysis.overlay_jpeg is None else len(analysis.overlay_jpeg)
    print(
        f"self-test scan: {analysis.status}, {analysis.label} p={analysis.probability:.4f}, overlay {overlay} bytes "
        f"(model {analyser.identity.version}, {analyser.identity.variant}, {analyser.identity.runtime})"
    )
    return EXIT_OK


def serve_command(args: argparse.Namespace) -> int:
    from edge_app.web.server import serve

    config, stopping = _start_service(args)
    serve(config, stopping)
    return EXIT_OK


def _password(source: Path | None) -> str:
    """From a file, standard input (-), or typed twice at the terminal."""
    if source is not None:
        text = sys.stdin.read() if str(source) == "-" else source.read_text()
        return text.rstrip("\n")
    import getpass

    first = getpass.getpass("Password: ")
    if getpass.getpass("Again: ") != first:
        raise DataError("the two passwords differ; nothing was changed")
    return first


def web_accounts_command(args: argparse.Namespace) -> int:
    """``web-user`` and ``web-token``: a token is printed once, as the last line; only its hash is kept."""
    from edge_app.web.server import accounts_for

    config = resolve_config(args.config, _overrides(args))
    accounts = accounts_for(config)
    try:
        if args.command == "web-user":
            if args.action == "add":
                accounts.add_user(args.name, _password(args.password_file))
                print(f"account {args.name} added")
            elif args.action == "remove":
                accounts.remove_user(args.name)
                print(f"account {args.name} removed (its sessions ended)")
            else:
                print("\n".join(accounts.users()) or "no accounts")
        elif args.action == "add":
            token = accounts.add_token(args.name)
            print(f"token {args.name} added; it is shown once, only its hash is kept:")
            print(token)
        elif args.action == "revoke":
            accounts.revoke_token(args.name)
            print(f"token {args.name} revoked")
        else:
            for info in accounts.tokens():
                state = "revoked" if info.revoked is not None else "active"
                used = "never used" if info.last_used is None else f"last used {time.ctime(info.last_used)}"
                print(f"{info.name:<24} {state:<8} {used}")
    finally:
        accounts.close()
    return EXIT_OK


def network_dropin_command(args: argparse.Namespace) -> int:
    from edge_app.dicom.units import network_dropin

    print(network_dropin(resolve_config(args.config), args.unit), end="")
    return EXIT_OK


def _expand(inputs: Sequence[Path]) -> list[Path]:
    files: list[Path] = []
    for item in inputs:
        if item.is_dir():
            files += sorted(
                p
                for p in item.iterdir()
                if p.is_file() and p.suffix.lower() in SCAN_SUFFIXES and sidecar_kind(p.name) is None
            )
        else:
            files.append(item)
    return files


def _sidecar_beside(path: Path, roi: Path | None) -> Sidecar | None:
    """The region sidecar of `path`: the one named by --roi, else ``NAME.roi.json`` or ``NAME.mask.png`` beside it."""
    candidates = [roi] if roi is not None else [path.parent / name for name in sidecar_names(path.name)]
    for candidate in candidates:
        kind = sidecar_kind(candidate.name) or ("roi" if candidate.suffix.lower() == ".json" else "mask")
        if candidate.is_file():
            return Sidecar(candidate.name, kind, candidate.read_bytes())
    return None


def _suggestion_row(name: str, candidate: Candidate) -> tuple[str, str, str, str, str]:
    """A region the detector proposes on a film left needs_roi, as `once` lists it under the film: where to look,
    not an answer (no probability)."""
    region = candidate.region
    where = f"at ({region.cx:.0f}, {region.cy:.0f}), radius {region.radius:.0f} px"
    return name, region.label, "suggested", "", f"detector score {candidate.score:.2f} {where}"


def once_command(args: argparse.Namespace) -> int:
    """Classify files now, through the same analyser and writer as the daemon (no journal, nothing moved)."""
    from edge_app.service.analyse import NEEDS_ROI
    from edge_app.service.lifecycle import Failure, ScanState, advance, received
    from edge_app.service.writer import ResultWriter

    paths = _expand(args.inputs)
    if args.roi is not None and len(paths) != 1:
        raise DataError(f"--roi names the regions of one scan; {len(paths)} scans were given")
    if args.roi is not None and not args.roi.is_file():
        raise MissingInputError(f"--roi {args.roi}: no such file")
    model = EdgeModel.load(args.model, args.variant, args.runtime, args.threads)
    limits = ScopeLimits.resolve(model.manifest.scope, args.min_side_px, args.max_side_px, args.max_extent_mm)
    detector = FilmDetector.load(model.bundle, model.manifest, model.runtime, args.threads)
    analyser = ModelAnalyser(model, args.max_pixels, limits, detector)
    writer = ResultWriter(args.results, analyser.identity)
    rows: list[tuple[str, str, str, str, str]] = []
    not_classified, taken = 0, set[str]()
    for path in paths:
        record = advance(received(path.name), ScanState.CLAIMED)
        try:
            sidecar = _sidecar_beside(path, args.roi)
            record = replace(record, sidecar_name=None if sidecar is None else sidecar.name)
            analysis = analyser.analyse(path.read_bytes(), path.name, sidecar)
        except (MammoEdgeError, OSError) as exc:
            failure = Failure(getattr(exc, "stage", "ingest"), type(exc).__name__, str(exc))
            writer.write_rejection(advance(record, ScanState.REJECTED, failure=failure))
            rows.append((path.name, "", "REJECTED", "", str(exc)))
            not_classified += 1
            continue
        stem = writer.free_stem(path.name, taken.__contains__)
        taken.add(stem)
        record = advance(
            record,
            ScanState.ANALYSED,
            sha256=analysis.sha256,
            result_stem=stem,
            status=analysis.status,
            label=analysis.label,
            probability=analysis.probability,
        )
        writer.write_result(record, analysis)
        if analysis.status == NEEDS_ROI:
            rows.append((path.name, "", NEEDS_ROI, "", str(analysis.reason)))
            rows += [_suggestion_row(path.name, candidate) for candidate in analysis.suggestions]
            if analysis.suggestions_reason:
                rows.append((path.name, "", "", "", f"no suggestions: {analysis.suggestions_reason}"))
            not_classified += 1
            continue
        overlay = str(args.results / str(record.overlay_file)) if analysis.overlay is not None else ""
        for answer in analysis.regions:
            rows.append((path.name, answer.label, answer.decision, f"{answer.probability:.4f}", overlay))
    width = max([len(row[0]) for row in rows] + [5])
    print(f"{'input':<{width}}  {'region':<6} {'label':<9} {'p(malig)':>8}  overlay / reason")
    for name, region, label, probability, detail in rows:
        print(f"{name:<{width}}  {region:<6} {label:<9} {probability:>8}  {detail}")
    _results_page(args.results, model, args.model).update()
    identity = analyser.identity
    print(
        f"model {identity.name} {identity.version} ({identity.variant}, {identity.runtime}); "
        f"threshold {identity.threshold:.3f}. Research use only: not for clinical use."
    )
    return EXIT_SOME_REJECTED if not_classified else EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    commands = {
        "run": run_command,
        "check-config": check_config_command,
        "status": status_command,
        "once": once_command,
        "dicom-listen": dicom_listen_command,
        "dicom-forward": dicom_forward_command,
        "dicom-requeue": dicom_requeue_command,
        "health": health_command,
        "network-dropin": network_dropin_command,
        "model": model_command,
        "selftest": selftest_command,
        "serve": serve_command,
        "web-user": web_accounts_command,
        "web-token": web_accounts_command,
    }
    return run_main(f"mammo-edge {args.command}", lambda: commands[args.command](args))


if __name__ == "__main__":
    sys.exit(main())
