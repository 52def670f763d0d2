"""The conversion itself (TensorFlow): quantise, export, verify against Keras, and only then write the bundle."""

from __future__ import annotations

import argparse
import hashlib
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
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
from numpy.typing import NDArray
from tqdm import tqdm

from edge_app.errors import DataError, MammoEdgeError
from edge_app.fsutil import sha256_of
from edge_app.macs import macs_per_op
from edge_app.manifest import (
    LABELS,
    SCHEMA_VERSION,
    VARIANTS,
    Manifest,
    ModelFile,
    SelfTestSet,
    TensorSpec,
    manifest_from_dict,
    write_manifest,
)
from edge_app.model import EdgeModel, calibrated_probabilities, get_output, set_input, set_inputs
from edge_app.preprocess import PreprocessConfig
from edge_app.probe import probe
from edge_app.runtime import load_runtime, make_interpreter
from edge_app.scope import TrainingScope
from edge_app.selftest import SelfTestSample, write_selftest
from mammo_convert.card import write_model_card
from mammo_convert.export import classifier_model, embed_metadata, gradcam_head_model, to_tflite
from mammo_convert.gate import Reference, Thresholds, failures, fidelity_set, measure_variant, table
from mammo_convert.int8 import calibrated_model, int8_model, refine
from mammo_convert.recipes import STUDY_RECIPES, Int8Recipe, repair_recipes
from mammo_convert.repair import layer_errors, repair_plan
from mammo_convert.signing import read_private_key, sign_bundle
from mammo_train.data import load_arrays
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
        "input": "preprocessed grayscale pixels 0-255, (1, size, size, 1); uint8 for full-integer int8, else float32",
        "normalisation_in_graph": {
            name: dict(zip(("mean", "variance"), normalisation(name), strict=True)) for name in backbones
        },
        "preprocess": config.to_dict(),
        "outputs": "malignant logit and each backbone's last-conv-block maps (manifest.json maps them by position)",
    }


def representative_batches(images: NDArray[np.uint8]) -> Any:
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


@dataclass
class Candidate:
    """One converted variant on its way through the gate."""

    variant: str
    name: str
    positions: dict[str, int]
    result: dict[str, Any]
    status: str  # first | repaired | rejected
    float_layers: dict[str, str] = field(default_factory=dict)
    float_macs_share: float = 0.0


class Conversion:
    """Everything one `mammo-convert` run needs, resolved once: the run, its images, the models and the staging
    folder the bundle is assembled in."""

    def __init__(self, args: argparse.Namespace, staging: Path) -> None:
        self.args = args
        self.staging = staging
        run = RunFiles(args.run)
        self.settings = run.read_settings()
        self.metrics = run.read_metrics()
        self.test_scores = self.metrics.split_scores("test")
        self.config = PreprocessConfig.from_dict(self.settings.preprocess)
        self.rows = run.split_rows(self.settings)
        self.model = keras.models.load_model(run.model)
        self.names = backbone_names(self.model)
        self.classifier, self.head = classifier_model(self.model), gradcam_head_model(self.model)
        train_rows = [r for r in self.rows if r.split == "train"]
        self.calibration = load_arrays(
            calibration_rows(train_rows, args.calibration, self.settings.seed), self.config, "calibration"
        )
        self.fidelity = fidelity_set(
            load_arrays([r for r in self.rows if r.split == "test"], self.config, "test"),
            load_arrays([r for r in self.rows if r.split == "val"], self.config, "val"),
        )
        given = {
            "max_auc_drop": args.max_auc_drop,
            "min_agreement": args.min_agreement,
            "min_heatmap_pearson": args.min_heatmap_pearson,
        }
        self.limits = Thresholds(**{name: value for name, value in given.items() if value is not None})
        self.recipe = Int8Recipe(
            args.int8_ranges, args.int8_bias, args.int8_percentile, args.int8_rounding, args.int8_logit
        )
        self.about = file_metadata(self.settings.arch, self.names, self.config)
        self.timings: dict[str, float] = {}
        self.reference = Reference(np.empty(0), np.empty(0, np.float32), None)
        self.head_positions: dict[str, int] = {}
        self.calibrations: dict[str, bytes] = {}  # by the SHA-256 of the images
        self.latest_refined: tuple[str, Int8Recipe, bytes] | None = None  # images' SHA-256, recipe, refined model
        self.version = datetime.now(timezone.utc).strftime("%Y%m%d%H%M%S")

    @cached_property
    def float_model(self) -> bytes:
        """The classifier in float32: the float32 variant, and the graph every int8 calibration runs."""
        return to_tflite(self.classifier, "float32")

    def write_file(self, name: str, data: bytes, role: str, variant: str) -> None:
        (self.staging / name).write_bytes(embed_metadata(data, {**self.about, "role": role, "variant": variant}))

    def entry(self, name: str, role: str, variant: str, positions: dict[str, int], **extra: Any) -> ModelFile:
        path = self.staging / name
        return ModelFile(
            role,
            variant,
            sha256_of(path),
            path.stat().st_size,
            _input_spec(path),
            positions,
            input_positions(path, self.names) if role == "gradcam_head" else {},
            **extra,
        )

    def manifest(self, files: dict[str, ModelFile], rejected: dict[str, list[str]]) -> Manifest:
        settings, rows = self.settings, self.rows
        return Manifest(
            schema_version=SCHEMA_VERSION,
            name=self.args.model_name,
            version=self.args.model_version or self.version,
            architecture=settings.arch,
            backbones=self.names,
            centre_offsets=tuple(BACKBONES[name].centre_offset for name in self.names),
            preprocess=self.config,
            scope=TrainingScope.from_dict(settings.scope) if settings.scope else TrainingScope(),
            labels=LABELS,
            temperature=self.metrics.temperature,
            threshold=self.metrics.threshold,
            target_sensitivity=self.metrics.target_sensitivity,
            files=files,
            training={
                "run": str(Path(self.args.run).resolve()),
                "split_sha256": settings.split_sha256,
                "sources": sorted({row.source for row in rows}),
                "counts": {split: sum(row.split == split for row in rows) for split in ("train", "val", "test")},
                "weights": settings.weights,
                "input_size": settings.input_size,
                "deterministic": settings.deterministic,
            },
            metrics={"test": self.test_scores["overall"], "per_source": self.test_scores["per_source"]},
            tools={**tool_versions(), "converter": "tf.lite.TFLiteConverter.from_keras_model"},
            created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            rejected=rejected,
            heat_scale=self.reference.heat_scale,
        )

    def selftest(self, manifest: Manifest) -> SelfTestSet:
        """The bundle's own sample: the gate's fidelity images (a device checks the first 16 at install; the Arm check
        runs the gate on all of them), the Keras float answers and every shipped variant's answers, read back
        through the device's `EdgeModel`."""
        images = self.fidelity.images
        answers = {}
        for variant in manifest.variants:
            model = EdgeModel(self.staging, manifest, variant, "auto", self.args.threads, heatmaps=False)
            answers[variant] = np.array([model.predict(image, heatmap=False).probability for image in images])
        keras = self.reference.probabilities[: len(images)]
        return write_selftest(self.staging, SelfTestSample(images, keras, answers))

    def measure(self, variant: str, name: str, positions: dict[str, int]) -> dict[str, Any]:
        """Gate figures of one classifier file, read through the device's own `EdgeModel`."""
        head = self.entry("gradcam_head.tflite", "gradcam_head", "float32", self.head_positions)
        files = {name: self.entry(name, "classifier", variant, positions), "gradcam_head.tflite": head}
        result = measure_variant(
            self.staging, self.manifest(files, {}), variant, self.fidelity, self.reference, self.args.threads
        )
        result["size_bytes"] = files[name].size_bytes
        result["failures"] = failures(result, self.limits)
        return result

    def convert(self, variant: str, data: bytes, name: str) -> Candidate:
        self.write_file(name, data, "classifier", variant)
        sample = [self.calibration.images[:1].astype(np.float32)]
        roles = ["logit", *self.names]
        positions = output_positions(self.staging / name, self.classifier, sample, roles, exact=variant == "float32")
        result = self.measure(variant, name, positions)
        return Candidate(variant, name, positions, result, "rejected" if result["failures"] else "first")

    def int8(self, recipe: Int8Recipe, images: NDArray[np.uint8], float_tensors: Sequence[str] = ()) -> Candidate:
        """The classifier in int8 as `recipe` says, calibrated on `images`, through the gate."""
        data = int8_model(self.refined(images, recipe), representative_batches(images), recipe, float_tensors)
        candidate = self.convert("int8", data, "classifier_int8.tflite")
        candidate.result["int8_recipe"] = recipe.to_dict()
        return candidate

    def refined(self, images: NDArray[np.uint8], recipe: Int8Recipe) -> bytes:
        """The classifier calibrated on `images` (once per set of images) and refined as `recipe` says (the latest
        kept: the repair's float-layer attempts and its layer ranking share one); `int8_model` says why."""
        key = hashlib.sha256(images.tobytes()).hexdigest()
        if key not in self.calibrations:
            self.calibrations[key] = calibrated_model(self.float_model, representative_batches(images))
        if self.latest_refined is None or self.latest_refined[:2] != (key, recipe):
            refined = refine(self.calibrations[key], representative_batches(images), recipe)
            self.latest_refined = (key, recipe, refined)
        return self.latest_refined[2]

    def study_int8(self) -> list[dict[str, Any]]:
        """Every technique alone and together (`STUDY_RECIPES`), through the gate: what ``--int8-study`` reports."""
        rows = []
        for recipe in STUDY_RECIPES:
            print(f"int8 study: {recipe.label} ...")
            result = self.int8(recipe, self.calibration.images).result
            rows.append({"recipe": recipe.to_dict(), "label": recipe.label, **_gate_figures(result)})
        (self.staging / "classifier_int8.tflite").unlink(missing_ok=True)
        return rows

    def repair_int8(self, failed: Candidate) -> Candidate:
        """First the other int8 recipes (`repair_recipes`); then recalibrate with twice the images, half of them
        flipped (ranges seen more widely); then, with whichever recipe and calibration measured closest to passing,
        keep the worst layers in float, one step at a time, within the MAC budget. The first attempt that passes
        ships."""
        tick = time.monotonic()
        images = self.calibration.images
        attempts: list[dict[str, Any]] = []
        failed.result["repair_attempts"] = attempts
        best, best_recipe = failed, self.recipe
        for recipe in repair_recipes(self.recipe):
            print(f"int8 repair: {recipe.label} ...")
            candidate = self.int8(recipe, images)
            attempts.append({"recipe": recipe.to_dict(), **_attempt(candidate, len(images), 0)})
            if not candidate.result["failures"]:
                return self._repaired(candidate, failed, tick)
            if _closer(candidate.result, best.result):
                best, best_recipe = candidate, recipe
        varied = np.concatenate([images, images[:, :, ::-1]])
        print(f"int8 repair: {best_recipe.label}, recalibrating on {len(varied)} images (half flipped) ...")
        candidate = self.int8(best_recipe, varied)
        attempts.append({"recipe": best_recipe.to_dict(), **_attempt(candidate, len(varied), 0)})
        if not candidate.result["failures"]:
            return self._repaired(candidate, failed, tick)
        if self.args.float_budget <= 0:  # no layer may stay in float: recalibration was the whole repair
            self.timings["repair_int8_s"] = round(time.monotonic() - tick, 1)
            (self.staging / failed.name).unlink(missing_ok=True)
            return failed
        calibration = varied if _closer(candidate.result, best.result) else images
        macs = macs_per_op(make_interpreter(load_runtime("auto"), self.staging / "classifier_float32.tflite", 1))
        total = sum(macs.values())
        debug = self.fidelity.images[:: max(1, len(self.fidelity.images) // self.args.debug_images)]
        errors = layer_errors(self.refined(calibration, best_recipe), debug, macs)
        failed.result["worst_layers"] = [error.to_dict(total) for error in errors[:10]]
        for plan in repair_plan(errors, total, self.args.float_budget):
            share = sum(error.macs for error in plan) / total
            print(f"int8 repair: {len(plan)} layer(s) in float ({share:.2%} of MACs) ...")
            candidate = self.int8(best_recipe, calibration, [error.tensor for error in plan])
            attempts.append(
                {
                    "recipe": best_recipe.to_dict(),
                    **_attempt(candidate, len(calibration), len(plan)),
                    "float_macs_share": round(share, 6),
                }
            )
            if not candidate.result["failures"]:
                candidate.float_layers = {
                    error.tensor: f"{error.op}: quantisation noise-to-signal {error.noise_to_signal:.2e} "
                    f"({error.steps_rmse:.2f} steps RMSE), rank {rank} of {len(errors)}; the gate failed with it "
                    "quantised"
                    for rank, error in enumerate(plan, start=1)
                }
                candidate.float_macs_share = round(share, 6)
                return self._repaired(candidate, failed, tick)
        self.timings["repair_int8_s"] = round(time.monotonic() - tick, 1)
        (self.staging / failed.name).unlink(missing_ok=True)
        return failed

    def _repaired(self, candidate: Candidate, failed: Candidate, started: float) -> Candidate:
        candidate.status = "repaired"
        for key in ("worst_layers", "repair_attempts"):
            if key in failed.result:
                candidate.result[key] = failed.result[key]
        candidate.result["first_failures"] = failed.result["failures"]
        self.timings["repair_int8_s"] = round(time.monotonic() - started, 1)
        return candidate


def _gate_figures(result: dict[str, Any]) -> dict[str, Any]:
    """What the gate judged of one int8 attempt, rounded for the report."""
    return {
        "agreement": round(result["agreement"], 4),
        "auc_drop": None if result["auc_drop"] is None else round(result["auc_drop"], 4),
        "heatmap_pearson": round(result["heatmap_pearson"], 4),
        "mean_abs_prob_diff": round(result["mean_abs_prob_diff"], 4),
        "failures": result["failures"],
    }


def _attempt(candidate: Candidate, calibration_images: int, float_layers: int) -> dict[str, Any]:
    return {"calibration_images": calibration_images, "float_layers": float_layers, **_gate_figures(candidate.result)}


def _closer(result: dict[str, Any], other: dict[str, Any]) -> bool:
    """Whether gate figures `result` are closer to passing than `other`: fewer failures, then agreement, then
    heatmap correlation."""

    def rank(figures: dict[str, Any]) -> tuple[int, float, float]:
        return (-len(figures["failures"]), figures["agreement"], figures["heatmap_pearson"])

    return rank(result) > rank(other)


def _variants(text: str) -> list[str]:
    """float32 (the fallback every bundle has) and int8 (the device's default) first, then the others asked for."""
    asked = [v.strip() for v in text.split(",") if v.strip()]
    unknown = [v for v in asked if v not in VARIANTS]
    if unknown:
        raise DataError(f"unknown variant(s) {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    return list(dict.fromkeys(["float32", "int8", *asked]))


def convert_run(args: argparse.Namespace) -> int:
    """Exit 0 when a bundle is written (every verified variant; a rejected one is listed with its reasons), 1 when
    even float32 fails the gate (no bundle, only the report)."""
    started = time.monotonic()
    variants = _variants(args.variants)
    if args.sign is not None:
        read_private_key(args.sign)  # a key that cannot sign is refused before the conversion, not after it
    args.out.parent.mkdir(parents=True, exist_ok=True)  # `--out new/folder/bundle` works as it reads
    staging = Path(tempfile.mkdtemp(prefix=f".{args.out.name}.", dir=args.out.parent.resolve()))
    try:
        job = Conversion(args, staging)
        tick = time.monotonic()
        job.write_file("gradcam_head.tflite", to_tflite(job.head, "float32"), "gradcam_head", "float32")
        sample_maps = [np.asarray(m) for m in job.classifier(job.calibration.images[:1].astype(np.float32))[1:]]
        job.head_positions = output_positions(
            staging / "gradcam_head.tflite", job.head, sample_maps, list(job.names), exact=True
        )
        job.timings["convert_gradcam_head_s"] = round(time.monotonic() - tick, 1)
        print(f"Keras reference on {len(job.fidelity.images)} fidelity images ...")
        job.reference = _reference(job.model, job.fidelity.images, job.metrics.temperature, job.fidelity.n_test)
        candidates: dict[str, Candidate] = {}
        if args.int8_study is not None:
            study = {"model": str(args.run), "fidelity_images": len(job.fidelity.images), "rows": job.study_int8()}
            args.int8_study.write_text(json.dumps({**study, "thresholds": asdict(job.limits)}, indent=2) + "\n")
        for variant in variants:
            tick = time.monotonic()
            if variant == "int8":
                candidate = job.int8(job.recipe, job.calibration.images)
            else:
                data = job.float_model if variant == "float32" else to_tflite(job.classifier, variant)
                candidate = job.convert(variant, data, f"classifier_{variant}.tflite")
            job.timings[f"convert_{variant}_s"] = round(time.monotonic() - tick, 1)
            if candidate.status == "rejected" and variant == "int8" and not (args.force or args.no_repair):
                print(f"int8 missed the gate ({'; '.join(candidate.result['failures'])}): locating the layers ...")
                candidate = job.repair_int8(candidate)
            if candidate.status == "rejected" and not args.force:
                (staging / candidate.name).unlink(missing_ok=True)
            candidates[variant] = candidate
            if variant == "float32" and candidate.status == "rejected" and not args.force:
                break  # no bundle without a verified float32: converting the rest would be wasted
        report = {variant: {**c.result, "status": c.status} for variant, c in candidates.items()}
        print(table(report))
        rejected = {v: c.result["failures"] for v, c in candidates.items() if c.status == "rejected"}
        summary: dict[str, Any] = {
            "variants": report,
            "thresholds": asdict(job.limits),
            "fidelity_images": len(job.fidelity.images),
            "timings": job.timings,
            "passed": not rejected,
        }
        if "float32" in rejected and not args.force:
            summary["total_s"] = round(time.monotonic() - started, 1)
            report_path = args.out.with_name(args.out.name + ".rejected-report.json")
            report_path.write_text(json.dumps(summary, indent=2))
            print(f"REJECTED: float32 failed the gate; no bundle written (report: {report_path})", file=sys.stderr)
            return 1
        kept = {v: c for v, c in candidates.items() if args.force or c.status != "rejected"}
        names = [c.name for c in kept.values()] + ["gradcam_head.tflite"]
        detector = None
        if args.detector is not None:
            from mammo_convert.detector import convert_detector

            print(f"detector {args.detector}: converting and checking it on the films in {args.detector_films} ...")
            tick = time.monotonic()
            detector, summary["detector"] = convert_detector(args.detector, args.detector_films, staging)
            job.write_file(detector.name, detector.data, "detector", detector.variant)
            job.timings["convert_detector_s"] = round(time.monotonic() - tick, 1)
            names.append(detector.name)
        runtimes = _probe_everywhere([staging / name for name in names], args.check_python)
        files = {
            c.name: job.entry(
                c.name,
                "classifier",
                c.variant,
                c.positions,
                runtimes=runtimes.get(c.name, {}),
                float_layers=c.float_layers,
                float_macs_share=c.float_macs_share,
            )
            for c in kept.values()
        }
        files["gradcam_head.tflite"] = job.entry(
            "gradcam_head.tflite",
            "gradcam_head",
            "float32",
            job.head_positions,
            runtimes=runtimes.get("gradcam_head.tflite", {}),
        )
        if detector is not None:
            files[detector.name] = job.entry(
                detector.name,
                "detector",
                detector.variant,
                detector.outputs,
                runtimes=runtimes.get(detector.name, {}),
            )
        manifest = replace(job.manifest(files, {} if args.force else rejected), forced=bool(rejected) and args.force)
        manifest = replace(manifest, detector=None if detector is None else detector.spec)
        manifest = replace(manifest, selftest=job.selftest(manifest))
        write_manifest(staging, manifest)
        manifest_from_dict(manifest.to_dict())  # what is written must read back
        (staging / "labels.txt").write_text("\n".join(LABELS) + "\n")
        summary["runtimes"] = runtimes
        summary["total_s"] = round(time.monotonic() - started, 1)
        (staging / "report.json").write_text(json.dumps(summary, indent=2))
        write_model_card(staging, manifest, summary, args.run)
        if args.sign is not None:
            key = sign_bundle(staging, args.sign)
            print(f"manifest signed with key {key.fingerprint} ({key.comment})")
        if args.out.exists():
            shutil.rmtree(args.out)
        staging.rename(args.out)
        for variant, reasons in rejected.items():
            verb = "kept anyway (--force; the manifest says forced)" if args.force else "left out"
            print(f"WARNING: {variant} failed the gate ({'; '.join(reasons)}): {verb}", file=sys.stderr)
        shipped = ", ".join(f"{v} ({c.status})" for v, c in kept.items())
        print(f"bundle written to {args.out} in {summary['total_s']} s: {shipped}")
        return 0
    finally:
        if staging.exists():
            shutil.rmtree(staging)


HEAT_PERCENTILE = 95.0


def _reference(model: keras.Model, images: NDArray[np.uint8], temperature: float, n_test: int) -> Reference:
    """The Keras answers on the fidelity images, and the bundle's heat scale: the `HEAT_PERCENTILE` percentile of
    the peak Grad-CAM evidence over the test split (the set's first `n_test` images), so most test regions' heat
    stays below full colour and a region with little evidence shows little heat (None: no evidence at all)."""
    cams = gradcam(model, images)  # its forward pass gives the logits too
    peaks = cams.peaks[:n_test]
    scale = float(np.percentile(peaks, HEAT_PERCENTILE)) if n_test and peaks.max() > 0 else None
    return Reference(calibrated_probabilities(cams.logits, temperature), cams.fused, scale)
