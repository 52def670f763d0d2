"""``mammo-baseline``: what a cross-validated AUC on a small real set means: a non-deep baseline on the same folds,
and label-permutation nulls.

The deep models' grouped 5-fold AUCs on the 58 MIAS crops all lie below 0.5. A model that learns nothing scores
0.5 *on average* only if nothing in the procedure ties its errors to the labels; cross-validation does: each test
fold's images are missing from its training set, so a learner that fits noise is pulled away from the held-out
images' labels (Perlich & Swirszcz 2011; Airola et al. 2011). Two nulls over the very folds ``mammo-train --cv``
uses separate that artefact from chance (labels are permuted within each test fold, so every fold keeps the
make-up the real folds have: the stratified split's 4 malignant crops of about 12):

- *fixed scores*: the baseline's out-of-fold scores kept, the labels permuted: AUC when scores carry no
  information and nothing is retrained (centred at 0.5);
- *retrained*: the labels permuted, then the baseline trained and tested on every fold again, as the real run
  was: the AUC a learner reaches when there is nothing to learn, cross-validation's own bias included.

The baseline is logistic regression (standardised features, L2, C = 1) on features of the model's own input (the
device's preprocessing): intensity inside the mass circle and around it, their contrast, gradient energy inside,
on the border and outside (an ill-defined or spiculated margin is the radiologist's sign of malignancy) and
Laplacian texture. Training uses the training and validation folds (nothing to stop early), testing the test fold.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from edge_app.errors import DataError, run_main
from edge_app.preprocess import PreprocessConfig, preprocess
from mammo_train.extra import require_train_extra
from mammo_train.layout import scan_dataset
from mammo_train.splits import fold_splits

FEATURES = (
    "mean_in",
    "std_in",
    "p10_in",
    "p50_in",
    "p90_in",
    "skew_in",
    "mean_out",
    "std_out",
    "contrast",
    "gradient_in",
    "gradient_border",
    "gradient_out",
    "laplacian_in",
    "laplacian_out",
)


def crop_features(image: NDArray[np.uint8]) -> NDArray[np.float64]:
    """The baseline's features of one model input ``(size, size, 1)``: the mass circle is the inner half of the
    crop (the crop rule cuts about twice the enclosing radius), its border the band around half that radius."""
    pixels = image[..., 0].astype(np.float64) / 255.0
    size = pixels.shape[0]
    rows, cols = np.mgrid[0:size, 0:size]
    distance = np.hypot(rows - (size - 1) / 2, cols - (size - 1) / 2) / size
    inside, border, outside = distance < 0.2, (distance >= 0.2) & (distance < 0.3), distance >= 0.3
    gradient = np.hypot(cv2.Sobel(pixels, cv2.CV_64F, 1, 0), cv2.Sobel(pixels, cv2.CV_64F, 0, 1))
    laplacian = np.abs(cv2.Laplacian(pixels, cv2.CV_64F))
    core = pixels[inside]
    spread = core.std() + 1e-9
    p10, p50, p90 = np.percentile(core, [10, 50, 90])
    values = [
        core.mean(),
        core.std(),
        p10,
        p50,
        p90,
        float(np.mean(((core - core.mean()) / spread) ** 3)),
        pixels[outside].mean(),
        pixels[outside].std(),
        core.mean() - pixels[outside].mean(),
        gradient[inside].mean(),
        gradient[border].mean(),
        gradient[outside].mean(),
        laplacian[inside].mean(),
        laplacian[outside].mean(),
    ]
    return np.array(values, np.float64)


def out_of_fold_scores(
    features: NDArray[np.float64], labels: NDArray[np.int64], folds: NDArray[np.int64]
) -> NDArray[np.float64]:
    """Each image's baseline score from the model trained without its fold."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    scores = np.zeros(len(labels))
    for fold in np.unique(folds):
        train, test = folds != fold, folds == fold
        if len(np.unique(labels[train])) < 2:
            scores[test] = labels[train].mean()  # one class left to learn: a constant, as a learner would give
            continue
        model = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=1000))
        model.fit(features[train], labels[train])
        scores[test] = model.predict_proba(features[test])[:, 1]
    return scores


def permute_within_folds(
    labels: NDArray[np.int64], folds: NDArray[np.int64], rng: np.random.Generator
) -> NDArray[np.int64]:
    """The labels shuffled inside each test fold: every fold keeps its make-up (the real folds' 4 malignant of about
    12), so the null differs from the real run only in which image carries which label."""
    shuffled = labels.copy()
    for fold in np.unique(folds):
        shuffled[folds == fold] = rng.permutation(labels[folds == fold])
    return shuffled


def fold_aucs(scores: NDArray[np.float64], labels: NDArray[np.int64], folds: NDArray[np.int64]) -> list[float | None]:
    """Each test fold's AUC (None for a fold holding one class)."""
    from sklearn.metrics import roc_auc_score

    return [
        float(roc_auc_score(labels[folds == fold], scores[folds == fold]))
        if len(np.unique(labels[folds == fold])) == 2
        else None
        for fold in np.unique(folds)
    ]


def summarise_run(scores: NDArray[np.float64], labels: NDArray[np.int64], folds: NDArray[np.int64]) -> dict[str, Any]:
    from sklearn.metrics import roc_auc_score

    per_fold = fold_aucs(scores, labels, folds)
    known = [auc for auc in per_fold if auc is not None]
    return {
        "pooled_auc": float(roc_auc_score(labels, scores)),
        "fold_aucs": per_fold,
        "mean_fold_auc": float(np.mean(known)),
        "folds_below_half": sum(auc < 0.5 for auc in known),
    }


def null_distribution(runs: list[dict[str, Any]], folds: int) -> dict[str, Any]:
    """The nulls' pooled and mean-fold AUC (mean, sd, 2.5 and 97.5 percentiles) and how often every fold was < 0.5."""
    pooled = np.array([run["pooled_auc"] for run in runs])
    mean_fold = np.array([run["mean_fold_auc"] for run in runs])
    return {
        "permutations": len(runs),
        "pooled_auc": _describe(pooled),
        "mean_fold_auc": _describe(mean_fold),
        "share_all_folds_below_half": float(np.mean([run["folds_below_half"] == folds for run in runs])),
    }


def _describe(values: NDArray[np.float64]) -> dict[str, float]:
    low, high = np.percentile(values, [2.5, 97.5])
    return {
        "mean": round(float(values.mean()), 4),
        "sd": round(float(values.std(ddof=1)), 4),
        "p2_5": round(float(low), 4),
        "p97_5": round(float(high), 4),
    }


def run_baseline(
    data: Path, folds: int, by: str, seed: int, permutations: int, input_size: int, deep: dict[str, Any] | None
) -> dict[str, Any]:
    """The baseline on the real labels, both nulls, the folds' make-up and (given `mammo-train --cv`'s summary) the
    deep models' AUCs placed in the retrained null."""
    records = scan_dataset(data)
    if not records:
        raise DataError(f"no images under {data}")
    splits = fold_splits(records, folds, seed, by)
    test_fold = {row.path: fold for fold, rows in enumerate(splits) for row in rows if row.split == "test"}
    config = PreprocessConfig(input_size=input_size)
    features = np.stack([crop_features(preprocess(record.path, config)) for record in records])
    labels = np.array([record.label for record in records], np.int64)
    fold_of = np.array([test_fold[record.path] for record in records], np.int64)
    scores = out_of_fold_scores(features, labels, fold_of)
    rng = np.random.default_rng(seed)
    fixed, retrained = [], []
    for _ in range(permutations):
        shuffled = permute_within_folds(labels, fold_of, rng)
        fixed.append(summarise_run(scores, shuffled, fold_of))
        retrained.append(summarise_run(out_of_fold_scores(features, shuffled, fold_of), shuffled, fold_of))
    observed = summarise_run(scores, labels, fold_of)
    null_retrained = np.array([run["pooled_auc"] for run in retrained])
    null_fixed = np.array([run["pooled_auc"] for run in fixed])
    result: dict[str, Any] = {
        "data": str(data),
        "folds": folds,
        "by": by,
        "seed": seed,
        "input_size": input_size,
        "features": list(FEATURES),
        "fold_make_up": [
            {"fold": fold, "images": int(np.sum(fold_of == fold)), "malignant": int(labels[fold_of == fold].sum())}
            for fold in range(folds)
        ],
        "baseline": {
            **observed,
            "p_fixed": _p_value(null_fixed, observed["pooled_auc"]),
            "p_retrained": _p_value(null_retrained, observed["pooled_auc"]),
        },
        "null_fixed_scores": null_distribution(fixed, folds),
        "null_retrained": null_distribution(retrained, folds),
    }
    if deep is not None:
        result["deep"] = {
            arch: {
                "pooled_auc": values["pooled"]["roc_auc"],
                "quantile_in_retrained_null": round(float(np.mean(null_retrained <= values["pooled"]["roc_auc"])), 4),
                "quantile_in_fixed_null": round(float(np.mean(null_fixed <= values["pooled"]["roc_auc"])), 4),
            }
            for arch, values in deep["archs"].items()
        }
    return result


def _p_value(null: NDArray[np.float64], observed: float) -> float:
    """One-sided: how often the null reaches the observed AUC (with the observed run counted, never 0)."""
    return round(float((1 + np.sum(null >= observed)) / (1 + len(null))), 4)


def report_markdown(result: dict[str, Any]) -> str:
    """The table `benchmarks/results/training.md` quotes."""
    fixed, retrained, baseline = result["null_fixed_scores"], result["null_retrained"], result["baseline"]
    lines = [
        f"Grouped {result['folds']}-fold cross-validation by {result['by']} (the folds of `mammo-train --cv`, seed "
        f"{result['seed']}), {result['input_size']} px; {retrained['permutations']} label permutations.",
        "",
        "| | pooled AUC | mean fold AUC | all folds < 0.5 |",
        "| --- | --- | --- | --- |",
        f"| null, fixed scores (chance) | {_interval(fixed['pooled_auc'])} | {_interval(fixed['mean_fold_auc'])} | "
        f"{fixed['share_all_folds_below_half']:.1%} of permutations |",
        f"| null, retrained (CV's own bias) | {_interval(retrained['pooled_auc'])} | "
        f"{_interval(retrained['mean_fold_auc'])} | {retrained['share_all_folds_below_half']:.1%} of permutations |",
        f"| logistic regression, real labels | {baseline['pooled_auc']:.3f} (p = {baseline['p_retrained']:.3f} "
        f"against the retrained null) | {baseline['mean_fold_auc']:.3f} | "
        f"{'yes' if baseline['folds_below_half'] == result['folds'] else 'no'} |",
    ]
    for arch, values in result.get("deep", {}).items():
        lines.append(
            f"| {arch} (deep, from scratch) | {values['pooled_auc']:.3f} (quantile "
            f"{values['quantile_in_retrained_null']:.2f} of the retrained null, "
            f"{values['quantile_in_fixed_null']:.2f} of chance) | | |"
        )
    make_up = ", ".join(f"{fold['malignant']}/{fold['images']}" for fold in result["fold_make_up"])
    lines += ["", f"Malignant / images per test fold: {make_up}."]
    return "\n".join(lines) + "\n"


def _interval(summary: dict[str, float]) -> str:
    return f"{summary['mean']:.3f} (95%: {summary['p2_5']:.3f}-{summary['p97_5']:.3f})"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mammo-baseline", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data", type=Path, required=True, help="a Mendeley-layout folder (e.g. mammo-data import-mias)"
    )
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--by", choices=("patient", "mass"), default="patient")
    parser.add_argument("--seed", type=int, default=0, help="the --seed of the mammo-train --cv run (same folds)")
    parser.add_argument("--permutations", type=int, default=1000)
    parser.add_argument("--input-size", type=int, default=96)
    parser.add_argument("--deep", type=Path, help="mammo-train --cv's cv_summary.json, placed in the nulls")
    parser.add_argument("--out", type=Path, required=True, help="FILE.json (+ FILE.md)")
    args = parser.parse_args(argv)

    def command() -> int:
        require_train_extra()  # scikit-learn comes with the workstation's extra
        deep = json.loads(args.deep.read_text()) if args.deep is not None else None
        result = run_baseline(args.data, args.folds, args.by, args.seed, args.permutations, args.input_size, deep)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        markdown = report_markdown(result)
        args.out.with_suffix(".md").write_text(markdown)
        print(markdown)
        return 0

    return run_main("mammo-baseline", command)


if __name__ == "__main__":
    sys.exit(main())
