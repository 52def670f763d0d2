"""``mammo-data``: make, import, audit and split datasets in the Mendeley layout."""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from edge_app.errors import run_main
from mammo_train.audit import audit
from mammo_train.films import generate_films, mias_sidecars
from mammo_train.layout import find_sources, scan_dataset
from mammo_train.mias import import_mias
from mammo_train.splits import SPLITS, crossing_groups, make_split, read_splits, write_splits
from mammo_train.synth import SynthSpec, generate


def _fraction(text: str) -> float:
    value = float(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a fraction in [0, 1)")
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} must be >= 0")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mammo-data", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    synth = commands.add_parser("synth", help="generate a synthetic dataset in the Mendeley layout")
    synth.add_argument("out", type=Path)
    synth.add_argument("--per-class", type=_positive, default=150, help="originals per class and source")
    synth.add_argument("--size", type=int, default=227, help="crop side in pixels (Mendeley crops: 227)")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--copies", type=_positive, default=1, help="augmented copies per original, NAME (n).png")
    synth.add_argument("--sources", default="SYNTH", help="comma-separated source names, one folder each")
    synth.add_argument(
        "--films",
        type=_positive,
        default=None,
        help="instead of crops: N full-field DICOM films, masses sized around --size, every third film normal;"
        " a .roi.json beside each film with masses",
    )

    mias = commands.add_parser("import-mias", help="crop the masses of raw MIAS films into the layout")
    mias.add_argument("films", type=Path, help="folder with MIAS Info.txt and mdbNNN.pgm films")
    mias.add_argument("out", type=Path)
    mias.add_argument("--copies", type=_positive, default=0)
    mias.add_argument("--min-size", type=int, default=64, help="smallest crop side in pixels")
    mias.add_argument("--crop-scale", type=float, default=2.0, help="crop side = crop-scale x radius")
    mias.add_argument("--seed", type=int, default=0)

    sidecars = commands.add_parser("mias-sidecars", help="write mdbNNN.roi.json region files from MIAS Info.txt")
    sidecars.add_argument("films", type=Path, help="folder with MIAS Info.txt and mdbNNN.pgm films")
    sidecars.add_argument("out", type=Path)

    audit_cmd = commands.add_parser("audit", help="count images and originals, flag leaking duplicates")
    audit_cmd.add_argument("root", type=Path)
    audit_cmd.add_argument("--by", choices=("mass", "patient"), default="mass")

    split = commands.add_parser("split", help="write a grouped, stratified splits.csv")
    split.add_argument("root", type=Path)
    split.add_argument("--out", type=Path, required=True)
    split.add_argument("--val", type=_fraction, default=0.15)
    split.add_argument("--test", type=_fraction, default=0.15)
    split.add_argument("--seed", type=int, default=0)
    split.add_argument("--by", choices=("mass", "patient"), default="patient")
    return parser


def _run_synth(args: argparse.Namespace) -> int:
    if args.films is not None:
        films = generate_films(args.out, args.films, args.size, args.seed)
        print(
            f"{len(films)} full-field DICOM films written to {args.out}, a .roi.json beside each with masses"
            " (truth: films.csv)"
        )
        return 0
    sources = tuple(name.strip() for name in args.sources.split(",") if name.strip())
    spec = SynthSpec(per_class=args.per_class, size=args.size, seed=args.seed, copies=args.copies, sources=sources)
    counts = generate(args.out, spec)
    for source, count in counts.items():
        print(f"{source}: {count} images ({args.per_class} originals per class, {args.copies} copies each)")
    print(f"written to {args.out}")
    return 0


def _run_import_mias(args: argparse.Namespace) -> int:
    report = import_mias(args.films, args.out, args.copies, args.min_size, args.crop_scale, args.seed)
    print("\n".join(report.lines()))
    print(f"written to {args.out / 'MIAS Dataset'}")
    return 0 if report.crops else 1


def _run_mias_sidecars(args: argparse.Namespace) -> int:
    per_film = mias_sidecars(args.films, args.out)
    masses = sum(len(rows) for rows in per_film.values())
    print(f"{len(per_film)} films, {masses} masses: mdbNNN.roi.json written to {args.out} (image coordinates: y down)")
    return 0 if per_film else 1


def _run_audit(args: argparse.Namespace) -> int:
    _, skipped = find_sources(args.root)
    for folder in skipped:
        print(f"skipped combined folder (repeats the per-source images): {folder.name}")
    records = scan_dataset(args.root)
    if not records:
        print(f"no images found under {args.root} in the Mendeley layout", file=sys.stderr)
        return 1
    report = audit(records, args.by)
    print(report.table())
    for paths in report.cross_class:
        print("DUPLICATE ACROSS CLASSES: " + " = ".join(str(path) for path in paths))
    for paths in report.cross_group:
        print(f"DUPLICATE ACROSS {args.by.upper()} GROUPS: " + " = ".join(str(path) for path in paths))
    for path, reason in report.unreadable:
        print(f"UNREADABLE: {path}: {reason}")
    print("audit: clean" if report.clean else "audit: problems found (see above)")
    return 0 if report.clean else 1


def _run_split(args: argparse.Namespace) -> int:
    records = scan_dataset(args.root)
    if not records:
        print(f"no images found under {args.root} in the Mendeley layout", file=sys.stderr)
        return 1
    if args.by == "patient":
        unknown = sum(record.patient is None for record in records)
        if unknown:
            print(f"note: {unknown} images have no known patient; they are grouped by original mass")
    rows = make_split(records, args.val, args.test, args.seed, args.by)
    write_splits(rows, args.out)
    images = Counter((row.split, row.source, row.label) for row in rows)
    groups = Counter(row.split for row in {(row.group, row.split): row for row in rows}.values())
    print(f"{'split':<6} {'source':<12} {'benign':>7} {'malignant':>10}")
    for split in SPLITS:
        for source in sorted({row.source for row in rows}):
            print(f"{split:<6} {source:<12} {images[split, source, 0]:>7} {images[split, source, 1]:>10}")
    print("groups per split: " + ", ".join(f"{split} {groups[split]}" for split in SPLITS))
    crossing = crossing_groups(read_splits(args.out))
    print(f"groups crossing splits (checked in the written file): {len(crossing)}")
    if crossing:
        print("ERROR: " + ", ".join(sorted(crossing)[:10]), file=sys.stderr)
        return 1
    print(f"written to {args.out}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    runners = {
        "synth": _run_synth,
        "import-mias": _run_import_mias,
        "mias-sidecars": _run_mias_sidecars,
        "audit": _run_audit,
        "split": _run_split,
    }
    return run_main(f"mammo-data {args.command}", lambda: runners[args.command](args))


if __name__ == "__main__":
    sys.exit(main())
