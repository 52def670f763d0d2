"""The conversion itself (TensorFlow): quantise, export, verify against Keras, and only then write the bundle."""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
from numpy.typing import NDArray
from tqdm import tqdm

from edge_app.errors import MammoEdgeError
from edge_app.fsutil import sha256_of
from edge_app.manifest import (
    LABELS,
    SCHEMA_VERSION,
    VARIANTS,
    Manifest,
    ModelFile,
    TensorSpec,
    manifest_from_dict,
    write_manifest,
)
from edge_app.model import calibrated_probabilities, get_output, set_input, set_inputs
from edge_app.preprocess import PreprocessConfig
from edge_app.probe import probe
from edge_app.runtime import load_runtime, make_interpreter
from mammo_convert.export import classifier_model, embed_metadata, gradcam_head_model, to_tflite
from mammo_convert.gate import Reference, Thresholds, failures, measure_variant, table
from mammo_train.data import ArraySet, load_arrays
from mammo_train.evaluate import predict_logits
from mammo_train.explain import gradcam
from mammo_train.models import BACKBONES, backbone_names, normalisation
from mammo_train.runfiles import RunFiles
from mammo_train.splits import SplitRow
from mammo_train.trainer import tool_versions


def calibration_rows(rows: Sequence[SplitRow], count: int, seed: int) -> list[SplitRow]:
    """Up to `count` training rows, stratified by class and source (proportional, at least one per stratum)."""
    strata: dict[tuple[str, int], list[SplitRow]] = defaultdict(list)
    for row in rows:
        strata[row.source, row.label].append(row)
    rng = np.random.default_rng(seed)
    chosen: list[SplitRow] = []
    total = len(rows)
    for key in sorted(strata):
        members = strata[key]
        take = max(1, round(count * len(members) / total)) if total else 0
        chosen += [members[i] for i in sorted(rng.permutation(len(members))[:take])]
    return chosen


def file_metadata(arch: str, backbones: Sequence[str], config: PreprocessConfig) -> dict[str, Any]:
    """What each .tflite file says about itself (the manifest stays the device's source of truth)."""
    return {
        "architecture": arch,
        "labels": list(LABELS),
        "input": "preprocessed grayscale pixels 0-255, (1, size, size, 1); uint8 for int8 files, else float32",
        "normalisation_in_graph": {
            name: dict(zip(("mean", "variance"), normalisation(name), strict=True)) for name in backbones
        },
        "preprocess": config.to_dict(),
        "outputs": "malignant logit and each backbone's last-conv-block maps (manifest.json maps them by position)",
    }


def _representative(images: NDArray[np.uint8]) -> Any:
    """Calibration batches; the first image gets one 0 and one 255 pixel to pin the input's range.

    The uint8 input's scale comes from the range calibration saw: synthetic or dark crops peak near 192, which
    gave scale 0.753 and clipped every brighter pixel on the device. With the full range pinned the scale is exactly
    1 and zero point 0, so preprocessed pixels go in unchanged; two pixels barely move any other tensor's range.
    """

    def generate() -> Iterator[list[NDArray[np.float32]]]:
        for position, image in enumerate(tqdm(images, desc="int8 calibration", unit="img", leave=False, disable=None)):
            batch = image[np.newaxis].astype(np.float32)
            if position == 0:
                batch.reshape(-1)[:2] = (0.0, 255.0)
            yield [batch]

    return generate


def output_positions(
    file: Path, model: keras.Model, sample: list[NDArray[np.float32]], roles: list[str], exact: bool
) -> dict[str, int]:
    """Which TFLite output is which Keras output, and a check on one sample that they agree.

    The converter names each output ``<call>:<k>`` with k the Keras output's index; that name, not the values,
    decides (two Grad-CAM maps of the same shape can both be all zero on a sample). An `exact` (float32) file must
    then reproduce the Keras values; a quantised or float16 one, their shapes (the gate measures the rest).
    """
    interpreter = make_interpreter(load_runtime("auto"), file, threads=1)
    if len(sample) == 1:
        set_input(interpreter, sample[0])
    else:
        set_inputs(interpreter, dict(enumerate(_match_inputs(interpreter.get_input_details(), sample))))
    interpreter.invoke()
    produced = model(sample if len(sample) > 1 else sample[0], training=False)
    expected = [np.asarray(value) for value in (produced if isinstance(produced, (list, tuple)) else [produced])]
    by_index: dict[int, int] = {}
    for position, detail in enumerate(interpreter.get_output_details()):
        match = re.search(r":(\d+)$", detail["name"])
        if match:
            by_index[int(match.group(1))] = position
    if sorted(by_index) != list(range(len(roles))):
        raise MammoEdgeError(f"cannot tell the outputs of {file.name} apart by name: {sorted(by_index)}")
    positions = {role: by_index[index] for index, role in enumerate(roles)}
    for role, value in zip(roles, expected, strict=True):
        got = get_output(interpreter, positions[role])
        if got.shape != value.shape:
            raise MammoEdgeError(f"{file.name} output {role} has shape {got.shape}, Keras {value.shape}")
        if exact and np.abs(got - value).max() > 1e-3 * (1.0 + np.abs(value).max()):
            raise MammoEdgeError(f"{file.name} output {role} does not reproduce the Keras model")
    return positions


def _match_inputs(details: list[dict[str, Any]], values: list[NDArray[np.float32]]) -> list[NDArray[np.float32]]:
    """Order Keras inputs like the TFLite inputs, by shape (each backbone's maps differ in channels)."""
    remaining = list(values)
    ordered = []
    for detail in details:
        index = next(i for i, value in enumerate(remaining) if value.shape == tuple(detail["shape"]))
        ordered.append(remaining.pop(index))
    return ordered


def input_positions(file: Path, names: Sequence[str]) -> dict[str, int]:
    """The gradcam head's input position per backbone, from the input names the converter keeps."""
    details = make_interpreter(load_runtime("auto"), file, threads=1).get_input_details()
    positions = {}
    for name in names:
        found = [i for i, detail in enumerate(details) if f"{name}_maps" in detail["name"]]
        if len(found) != 1:
            raise MammoEdgeError(f"cannot tell which input of {file.name} takes the {name} maps")
        positions[name] = found[0]
    return positions


def _input_spec(file: Path) -> TensorSpec:
    detail = make_interpreter(load_runtime("auto"), file, threads=1).get_input_details()[0]
    scale, zero_point = detail["quantization"]
    return TensorSpec(
        tuple(int(v) for v in detail["shape"]), np.dtype(detail["dtype"]).name, float(scale), int(zero_point)
    )


def _probe_everywhere(files: list[Path], pythons: Sequence[str]) -> dict[str, dict[str, str]]:
    results = probe(files)
    for python in pythons:
        completed = subprocess.run(
            [python, "-m", "edge_app.probe", *map(str, files)], capture_output=True, text=True, check=False
        )
        if completed.returncode != 0:
            raise MammoEdgeError(f"runtime probe with {python} failed: {completed.stderr.strip().splitlines()[-1:]}")
        for name, outcomes in json.loads(completed.stdout).items():
            results.setdefault(name, {}).update(outcomes)
    return results


def convert_run(args: argparse.Namespace) -> int:
    started = time.monotonic()
    files = RunFiles(args.run)
    settings = files.read_settings()
    metrics = files.read_metrics()
    test_scores = metrics.split_scores("test")
    variants = ["int8", *[v for v in dict.fromkeys(args.variants.split(",")) if v.strip() and v != "int8"]]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise MammoEdgeError(f"unknown variant(s) {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    config = PreprocessConfig.from_dict(settings.preprocess)
    rows = files.split_rows(settings)
    model = keras.models.load_model(files.model)
    names = backbone_names(model)
    calibration = load_arrays(
        calibration_rows([r for r in rows if r.split == "train"], args.calibration, settings.seed),
        config,
        "calibration",
    )
    test = load_arrays([r for r in rows if r.split == "test"], config, "test")
    staging = Path(tempfile.mkdtemp(prefix=f".{args.out.name}.", dir=args.out.parent.resolve()))
    try:
        timings: dict[str, float] = {}
        classifier, head = classifier_model(model), gradcam_head_model(model)
        sample_pixels = calibration.images[:1].astype(np.float32)
        sample_maps = [np.asarray(m) for m in classifier(sample_pixels, training=False)[1:]]
        written: list[tuple[str, str, str, dict[str, int]]] = []
        about = file_metadata(settings.arch, names, config)
        for variant in variants:
            tick = time.monotonic()
            data = to_tflite(classifier, variant, _representative(calibration.images) if variant == "int8" else None)
            name = f"classifier_{variant}.tflite"
            (staging / name).write_bytes(embed_metadata(data, {**about, "role": "classifier", "variant": variant}))
            timings[f"convert_{variant}_s"] = round(time.monotonic() - tick, 1)
            roles = ["logit", *names]
            written.append(
                (
                    name,
                    "classifier",
                    variant,
                    output_positions(staging / name, classifier, [sample_pixels], roles, exact=variant == "float32"),
                )
            )
        tick = time.monotonic()
        head_data = to_tflite(head, "float32")
        (staging / "gradcam_head.tflite").write_bytes(embed_metadata(head_data, {**about, "role": "gradcam_head"}))
        timings["convert_gradcam_head_s"] = round(time.monotonic() - tick, 1)
        written.append(
            (
                "gradcam_head.tflite",
                "gradcam_head",
                "float32",
                output_positions(staging / "gradcam_head.tflite", head, sample_maps, list(names), exact=True),
            )
        )
        runtimes = _probe_everywhere([staging / name for name, *_ in written], args.check_python)
        (staging / "labels.txt").write_text("\n".join(LABELS) + "\n")
        manifest = Manifest(
            schema_version=SCHEMA_VERSION,
            name=args.model_name,
            version=args.model_version or datetime.now(timezone.utc).strftime("%Y%m%d%H%M%S"),
            architecture=settings.arch,
            backbones=names,
            centre_offsets=tuple(BACKBONES[name].centre_offset for name in names),
            preprocess=config,
            labels=LABELS,
            temperature=metrics.temperature,
            threshold=metrics.threshold,
            target_sensitivity=metrics.target_sensitivity,
            files={
                name: ModelFile(
                    role,
                    variant,
                    sha256_of(staging / name),
                    (staging / name).stat().st_size,
                    _input_spec(staging / name),
                    positions,
                    input_positions(staging / name, names) if role == "gradcam_head" else {},
                    runtimes.get(name, {}),
                )
                for name, role, variant, positions in written
            },
            training={
                "run": str(Path(args.run).resolve()),
                "split_sha256": settings.split_sha256,
                "sources": sorted({row.source for row in rows}),
                "counts": {split: sum(row.split == split for row in rows) for split in ("train", "val", "test")},
                "weights": settings.weights,
                "input_size": settings.input_size,
            },
            metrics={"test": test_scores["overall"], "per_source": test_scores["per_source"]},
            tools={**tool_versions(), "converter": "tf.lite.TFLiteConverter.from_keras_model"},
            created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        )
        write_manifest(staging, manifest)
        manifest_from_dict(manifest.to_dict())  # what is written must read back
        print(f"Keras reference on {len(test)} test images ...")
        reference = _reference(model, test, manifest.temperature)
        given = {
            "max_auc_drop": args.max_auc_drop,
            "min_agreement": args.min_agreement,
            "min_heatmap_pearson": args.min_heatmap_pearson,
        }
        limits = Thresholds(**{name: value for name, value in given.items() if value is not None})
        report: dict[str, Any] = {}
        for variant in variants:
            result = measure_variant(staging, manifest, variant, test, reference, args.threads)
            result["size_bytes"] = manifest.classifier(variant)[1].size_bytes
            result["failures"] = failures(result, limits)
            report[variant] = result
        print(table(report))
        passed = not any(result["failures"] for result in report.values())
        summary = {
            "variants": report,
            "thresholds": limits.__dict__,
            "timings": timings,
            "passed": passed,
            "runtimes": runtimes,
            "total_s": round(time.monotonic() - started, 1),
        }
        if not passed and not args.force:
            rejected = args.out.with_name(args.out.name + ".rejected-report.json")
            rejected.write_text(json.dumps(summary, indent=2))
            print(f"REJECTED: the gate failed; no bundle written (report: {rejected})", file=sys.stderr)
            return 1
        if not passed:
            write_manifest(staging, replace(manifest, forced=True))
            print("WARNING: --force: the bundle is written although the gate failed; its manifest says forced")
        (staging / "report.json").write_text(json.dumps(summary, indent=2))
        if args.out.exists():
            shutil.rmtree(args.out)
        staging.rename(args.out)
        print(f"bundle written to {args.out} in {summary['total_s']} s")
        return 0
    finally:
        if staging.exists():
            shutil.rmtree(staging)


def _reference(model: keras.Model, test: ArraySet, temperature: float) -> Reference:
    logits = predict_logits(model, test.images)
    return Reference(calibrated_probabilities(logits, temperature), gradcam(model, test.images).fused)
