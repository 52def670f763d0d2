"""Grouped splits: no group ever in two splits, stratified, deterministic."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from mammo_train.layout import ImageRecord, scan_dataset
from mammo_train.splits import (
    assign_folds,
    assign_groups,
    crossing_groups,
    fold_splits,
    group_strata,
    make_split,
    read_splits,
    write_splits,
)

layouts = st.lists(
    st.tuples(
        st.sampled_from(["INbreast", "MIAS", "DDSM"]),  # source
        st.integers(0, 1),  # label
        st.integers(0, 30),  # original index
        st.integers(0, 6),  # copies
        st.integers(0, 12),  # patient index
    ),
    min_size=1,
    max_size=60,
)


def _records(layout: list[tuple[str, int, int, int, int]]) -> list[ImageRecord]:
    records = []
    patient_of: dict[str, str] = {}  # an original mass belongs to one patient
    for source, label, original, copies, patient in layout:
        name = f"{source}-{label}-{original}"
        patient_of.setdefault(name, f"p{patient}")
        for copy in range(copies + 1):
            path = Path(f"/{source}/{label}/{name}" + (f" ({copy})" if copy else "") + ".png")
            records.append(ImageRecord(path, source, label, name, patient_of[name]))
    return list({record.path: record for record in records}.values())


@settings(max_examples=200, deadline=None)
@given(layouts, st.sampled_from(["mass", "patient"]), st.floats(0, 0.45), st.floats(0, 0.45), st.integers(0, 99))
def test_no_group_crosses_splits(
    layout: list[tuple[str, int, int, int, int]], by: str, val: float, test: float, seed: int
) -> None:
    records = _records(layout)
    assignment = assign_groups(group_strata(records, by), val, test, seed)
    splits_of_group: dict[str, set[str]] = {}
    for record in records:
        splits_of_group.setdefault(record.group(by), set()).add(assignment[record.group(by)])
    assert all(len(splits) == 1 for splits in splits_of_group.values())
    # copies stay with their original whatever the grouping
    by_original: dict[str, set[str]] = {}
    for record in records:
        by_original.setdefault(record.original, set()).add(assignment[record.group(by)])
    assert all(len(splits) == 1 for splits in by_original.values())
    # every stratum keeps at least one group for training
    strata = group_strata(records, by)
    for stratum in set(strata.values()):
        assert any(assignment[g] == "train" for g, s in strata.items() if s == stratum)
    assert assignment == assign_groups(dict(reversed(list(group_strata(records, by).items()))), val, test, seed)


def test_fractions_are_respected_per_stratum() -> None:
    strata = {f"g{i}": f"S/{i % 2}" for i in range(200)}
    assignment = assign_groups(strata, 0.15, 0.2, 0)
    counts = Counter((strata[g], split) for g, split in assignment.items())
    for stratum in ("S/0", "S/1"):
        assert counts[stratum, "test"] == 20 and counts[stratum, "val"] == 15 and counts[stratum, "train"] == 65


def test_synthetic_copies_stay_with_their_original(synth_root: Path, tmp_path: Path) -> None:
    rows = make_split(scan_dataset(synth_root), 0.2, 0.2, 7, "mass")
    write_splits(rows, tmp_path / "splits.csv")
    reread = read_splits(tmp_path / "splits.csv")
    assert [row.path.resolve() for row in reread] == [row.path.resolve() for row in rows]
    assert not crossing_groups(reread)
    by_original: dict[str, set[str]] = {}
    for row in reread:
        by_original.setdefault(row.path.stem.split(" (")[0], set()).add(row.split)
    assert all(len(splits) == 1 for splits in by_original.values())
    assert {row.split for row in reread} == {"train", "val", "test"}
    assert len({row.sha256 for row in reread}) == len(reread)


@settings(max_examples=100, deadline=None)
@given(layouts, st.integers(2, 6), st.integers(0, 99))
def test_folds_partition_groups_and_stay_balanced(
    layout: list[tuple[str, int, int, int, int]], folds: int, seed: int
) -> None:
    records = _records(layout)
    strata = group_strata(records, "patient")
    assume(len(strata) >= folds)
    assignment = assign_folds(strata, folds, seed)
    assert set(assignment) == set(strata) and set(assignment.values()) <= set(range(folds))
    sizes = Counter(assignment.values())
    assert max(sizes.values()) - min(sizes.get(fold, 0) for fold in range(folds)) <= 1  # balanced overall
    for stratum in set(strata.values()):
        per_fold = Counter(assignment[g] for g, s in strata.items() if s == stratum)
        assert max(per_fold.values()) - min(per_fold.get(fold, 0) for fold in range(folds)) <= 1


def test_fold_splits_test_every_group_exactly_once(synth_root: Path) -> None:
    records = scan_dataset(synth_root)
    splits = fold_splits(records, 4, 0, "patient")
    tested: Counter[str] = Counter()
    for rows in splits:
        assert len(rows) == len(records) and not crossing_groups(rows)
        assert {row.split for row in rows} == {"train", "val", "test"}
        tested.update({row.group for row in rows if row.split == "test"})
    assert set(tested) == {record.group("patient") for record in records} and set(tested.values()) == {1}


def test_run_metrics_say_which_evaluation_is_missing(tmp_path: Path) -> None:
    """`mammo-convert` reads test scores through `RunMetrics`: a run evaluated only on val is a clear error naming
    the command to run, not a KeyError."""
    import json

    from edge_app.errors import DataError, MissingInputError
    from mammo_train.runfiles import RunMetrics

    with pytest.raises(MissingInputError, match="evaluate the run first"):
        RunMetrics.read(tmp_path / "metrics.json")
    scores = {"overall": {"roc_auc": 0.9}, "per_source": {}}
    (tmp_path / "metrics.json").write_text(
        json.dumps(
            {"val": scores, "validation": scores, "threshold": 0.4, "target_sensitivity": 0.9, "temperature": 1.5}
        )
    )
    metrics = RunMetrics.read(tmp_path / "metrics.json")
    assert (metrics.temperature, metrics.threshold) == (1.5, 0.4) and metrics.split_scores("val") == scores
    with pytest.raises(DataError, match=r"no 'test' evaluation \(has: val\); run `mammo-eval RUN_DIR --split test`"):
        metrics.split_scores("test")
    (tmp_path / "metrics.json").write_text(json.dumps({"test": scores}))
    with pytest.raises(DataError, match="not a mammo-eval metrics file"):
        RunMetrics.read(tmp_path / "metrics.json")


def test_repair_plan_doubles_then_stops_at_the_mac_budget() -> None:
    pytest.importorskip("tensorflow", reason="the repair module converts with TensorFlow")
    from mammo_convert.repair import LayerError, repair_plan

    errors = [LayerError(f"t{i}", "CONV_2D", 1.0 / (i + 1), 0.3, macs) for i, macs in enumerate([0, 1, 2, 3, 4, 50, 1])]
    plans = repair_plan(errors, total_macs=100, budget=0.10)  # 0+1+2+3+4 = 10 fits, + 50 does not
    assert [[e.tensor for e in plan] for plan in plans] == [
        ["t0"],
        ["t0", "t1"],
        ["t0", "t1", "t2", "t3"],
        [f"t{i}" for i in range(5)],
    ]
    assert repair_plan(errors, total_macs=100, budget=0.0) == [[errors[0]]]  # a free layer (0 MACs) still fits
    assert repair_plan([LayerError("big", "CONV_2D", 9.0, 0.3, 50)], total_macs=100, budget=0.10) == []
