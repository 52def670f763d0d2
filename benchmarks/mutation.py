"""Mutation testing of the device code: how many deliberate bugs the fast test suite catches.

`make mutation` runs this (not CI: hours on 2 cores, about 50 mutants a minute). mutmut imports the code it mutates
by the module name its path gives, so the run happens in a staged copy of the project where the mutated packages sit
at the top (``edge_app/``, and ``mammo_convert/`` whose ``gate.py`` is the one file of it mutated); the
configuration is ``[tool.mutmut]`` in pyproject.toml. ``--again`` copies the work tree over the staged one, has mutmut
find again which functions each test calls when the mutated code changed, and re-runs only the mutants not yet
killed (after new tests), keeping every other verdict; ``--pending`` runs only those an interrupted run never
reached, and ``--sample N`` only N of those, drawn at random from all of them (``--only`` then picks among the
survivors; the names drawn are kept in the result, and ``--rescore`` counts them again after mutants were re-run by
hand). The mutants run last are the costliest (mutmut runs the quickest first; the last ones are reached by the
slow daemon and DICOM tests, minutes each on 2 cores), so a uniform sample of them estimates the whole set's score
with an interval (`sample_estimate`).

The counts go to ``benchmarks/results/mutation.json`` and every survivor, with its diff, to
``benchmarks/results/mutation-survivors.txt``; docs/testing.md explains the ones left alive. A mutant no test
reaches counts as survived, and a mutant that crashes the test run (a segfault) counts as killed.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import math
import os
import random
import re
import shutil
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODULES = ["edge_app (edge_app/cli.py aside)", "convert/mammo_convert/gate.py"]
PACKAGES = ("edge_app", "mammo_convert")  # where the mutated modules sit in the staged copy
# mutmut's exit codes per mutant, as this report counts them
KILLED = {1, 3, -11, -9, -8, 35}  # a failed test, pytest's internal error, a crash
TIMEOUT = {36, -24, 24, 152, 255}
SURVIVED = {0, 5, 33}  # no test failed, or no test reached it


# What a surviving mutant changed, recognised from its diff; docs/testing.md gives each kind's reason.
_STRING = re.compile(r"""[rbuf]*("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')""")
_DTYPE = re.compile(r"(?:dtype=)?np\.(?:u?int\d+|float\d+|bool_)")
_OPENCV_ARGUMENT = re.compile(r"cv2\.(?:LINE|INTER|FONT)_[A-Z0-9_]+|_FONT")
KINDS = {
    "wording": "only the text of a string changed",
    "dtype": "a NumPy dtype argument became None or was dropped",
    "opencv": "an OpenCV drawing or resizing flag became None or was dropped",
    "other": "anything else",
}


def _changed_lines(diff: str) -> tuple[str, str]:
    lines = diff.splitlines()
    removed = " ".join(line[1:].strip() for line in lines if line.startswith("-") and not line.startswith("---"))
    added = " ".join(line[1:].strip() for line in lines if line.startswith("+") and not line.startswith("+++"))
    return removed, added


def _spans(removed: str, added: str) -> tuple[int, str, str]:
    """Where the two differ: the offset in `removed`, and what each has there."""
    start = 0
    while start < min(len(removed), len(added)) and removed[start] == added[start]:
        start += 1
    end = 0
    while end < min(len(removed), len(added)) - start and removed[-1 - end] == added[-1 - end]:
        end += 1
    return start, removed[start : len(removed) - end], added[start : len(added) - end]


def kind_of(diff: str) -> str:
    """Which of `KINDS` a survivor's diff is."""
    removed, added = _changed_lines(diff)
    start, old, new = _spans(removed, added)
    if any(match.start() <= start and start + len(old) <= match.end() for match in _STRING.finditer(removed)):
        return "wording"
    dropped = new.strip(" ,") in ("", "None")
    for kind, pattern in (("dtype", _DTYPE), ("opencv", _OPENCV_ARGUMENT)):
        if dropped and pattern.fullmatch(old.strip(" ,")):
            return kind
    return "other"


def mutmut_command() -> str:
    return str(Path(sys.executable).with_name("mutmut"))


def stage(root: Path) -> bool:
    """Copy the project's files as they are in the work tree (tracked, and new ones not ignored) to `root`, with
    ``mammo_convert`` also at the top; True when a mutated package's code changed (or was staged for the first time)."""
    before = _package_code(root)
    for stale in (root / "tests", root / "mutants" / "tests"):  # a test removed from the project is gone here too
        shutil.rmtree(stale, ignore_errors=True)
    listing = ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"]
    listed = subprocess.run(listing, cwd=REPO, capture_output=True, check=True).stdout
    for name in filter(None, listed.decode().split("\0")):
        source = REPO / name
        if source.is_file():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, root / name)
    shutil.copytree(root / "convert" / "mammo_convert", root / "mammo_convert", dirs_exist_ok=True)
    refresh_package_data(root)
    return _package_code(root) != before


def _package_code(root: Path) -> dict[str, bytes]:
    return {str(path.relative_to(root)): path.read_bytes() for name in PACKAGES for path in (root / name).rglob("*.py")}


def refresh_package_data(root: Path) -> None:
    """mutmut regenerates the mutated copy of a changed ``.py`` file but copies the packages' other files (the result
    schema, the web app's pages) only once: without this, a run after a schema change tests the mutants against the
    old schema, and every test that validates a result fails for that, not for the mutant."""
    for package in PACKAGES:
        for source in (root / package).rglob("*"):
            target = root / "mutants" / source.relative_to(root)
            if source.is_file() and source.suffix != ".py" and target.parent.is_dir():
                shutil.copy2(source, target)


def forget_test_coverage(root: Path) -> None:
    """Make mutmut find again which functions every test calls, keeping its verdicts (after the code changed).

    mutmut collects that only for tests it has not seen, so a test that existed before a function was added or
    changed is never run against that function's mutants: they survive falsely (a measured case: the detector's
    `find_breast`, replacing `breast_mask`, was tried only against the four tests written after it). Forgetting the
    tests' durations makes every test new to mutmut: one coverage run of the suite (minutes), then every verdict
    still to give is given against the tests that really reach the mutant."""
    stats = root / "mutants" / "mutmut-stats.json"
    if stats.is_file():
        state = json.loads(stats.read_text())
        state["duration_by_test"] = {}
        stats.write_text(json.dumps(state))


def verdicts(root: Path) -> dict[str, int | None]:
    """Every mutant's exit code, from mutmut's files."""
    found: dict[str, int | None] = {}
    for meta in sorted((root / "mutants").rglob("*.meta")):
        found.update(json.loads(meta.read_text()).get("exit_code_by_key", {}))
    return found


def summary(found: dict[str, int | None]) -> dict[str, object]:
    counts = Counter(
        "killed" if code in KILLED else "timeout" if code in TIMEOUT else "survived" if code in SURVIVED else "not run"
        for code in found.values()
    )
    killed, survived, timeout = counts["killed"], counts["survived"], counts["timeout"]
    return {
        "killed": killed,
        "survived": survived,
        "timeout": timeout,
        "total": len(found),
        "not_run": counts["not run"],
        "no_tests": sum(code in (5, 33) for code in found.values()),
        "score": round((killed + timeout) / max(1, killed + survived + timeout), 4),
        "modules": MODULES,
        "command": "make mutation",
    }


def sample_estimate(found: dict[str, int | None], drawn: list[str], drawn_from: int, seed: int) -> dict[str, object]:
    """The whole set's score, estimated from a uniform random sample of the mutants never run.

    The mutants not drawn are assumed to survive at the sample's rate; the interval carries the sample's 95% Wilson
    interval for that rate through (the mutants already measured count as they are). The draw is made from the
    staged copy's last verdicts, before mutmut makes the mutants of changed functions anew: a name drawn there that
    no longer exists is left out of the sample and counted in `dropped`."""
    present = [name for name in drawn if name in found]
    survived = sum(found[name] in SURVIVED for name in present)
    size = len(present)
    not_run = sum(code is None for code in found.values())
    measured_survivors, total = sum(code in SURVIVED for code in found.values()), len(found)

    def score(rate: float) -> float:
        return round(1 - (measured_survivors + rate * not_run) / total, 4)

    low, high = _wilson(survived, size)
    return {
        "drawn_from": drawn_from,
        "size": size,
        "dropped": len(drawn) - size,
        "seed": seed,
        "drawn": sorted(drawn),  # so a later `--rescore` can count the same mutants again
        "survived": survived,
        "survival_rate_ci": [round(low, 4), round(high, 4)],
        "not_run": not_run,
        "score_all": score(survived / size if size else 0.0),
        "score_all_ci": [score(high), score(low)],
    }


def _wilson(successes: int, trials: int, z: float = 1.96) -> tuple[float, float]:
    """The 95% Wilson score interval of a binomial proportion."""
    if trials == 0:
        return 0.0, 1.0
    rate = successes / trials
    centre = (rate + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * math.sqrt(rate * (1 - rate) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)
    return max(0.0, centre - half), min(1.0, centre + half)


def _chosen(name: str, only: str) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in only.split(","))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--work", type=Path, default=REPO / "build" / "mutation", help="the staged copy")
    parser.add_argument("--max-children", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--again", action="store_true", help="re-run only the mutants not killed in the last run")
    parser.add_argument(
        "--only", default="*", help="with --again: mutants whose names match one of these comma-separated globs"
    )
    parser.add_argument("--pending", action="store_true", help="with --again: only the mutants never run yet")
    parser.add_argument(
        "--sample",
        type=int,
        default=0,
        help="with --again: of the mutants never run, this many drawn at random from all of them (--only then "
        "chooses among the others), and the rest estimated from them",
    )
    parser.add_argument("--seed", type=int, default=0, help="the --sample draw's seed")
    parser.add_argument(
        "--rescore",
        action="store_true",
        help="run nothing: count the staged copy's verdicts again (after mutants were re-run by hand, on a quiet "
        "machine), with the last result's sample",
    )
    args = parser.parse_args(argv)
    if args.sample and not args.again:
        parser.error("--sample draws from the mutants never run: give it with --again")
    if args.rescore:
        last = json.loads((args.out / "mutation.json").read_text()).get("sample")
        if last is None:
            return write_results(args.work, args.out, None, 0, 0)
        return write_results(args.work, args.out, last["drawn"], last["drawn_from"], last["seed"])
    if not args.again:
        shutil.rmtree(args.work, ignore_errors=True)
    if stage(args.work):
        forget_test_coverage(args.work)
    found = verdicts(args.work) if args.again else {}
    never_run = sorted(name for name, code in found.items() if code is None)
    again = [
        name
        for name, code in found.items()
        if code is not None
        and code not in KILLED | TIMEOUT
        and not (args.pending and code in SURVIVED)
        and _chosen(name, args.only)
    ]
    if args.sample:
        drawn = sorted(random.Random(args.seed).sample(never_run, min(args.sample, len(never_run))))
    else:
        drawn = [name for name in never_run if _chosen(name, args.only)]
    command = [mutmut_command(), "run", "--max-children", str(args.max_children), *sorted(again + drawn)]
    if subprocess.run(command, cwd=args.work, check=False).returncode != 0:
        print("mutmut run failed", file=sys.stderr)
        return 1
    return write_results(args.work, args.out, drawn if args.sample else None, len(never_run), args.seed)


def write_results(work: Path, out: Path, drawn: list[str] | None, drawn_from: int, seed: int) -> int:
    """mutation.json (with the sample's estimate when one was drawn) and every survivor's diff, from the verdicts."""
    found = verdicts(work)
    result = summary(found)
    if drawn is not None:
        result["sample"] = sample_estimate(found, drawn, drawn_from, seed)
    result["mutmut"] = subprocess.run(
        [mutmut_command(), "--version"], cwd=work, capture_output=True, text=True, check=False
    ).stdout.strip()
    by_kind: dict[str, list[str]] = defaultdict(list)
    for name in sorted(name for name, code in found.items() if code in SURVIVED):
        shown = subprocess.run([mutmut_command(), "show", name], cwd=work, capture_output=True, text=True, check=False)
        by_kind[kind_of(shown.stdout)].append(shown.stdout.rstrip())
    result["survivors_by_kind"] = {kind: len(by_kind[kind]) for kind in KINDS}
    out.mkdir(parents=True, exist_ok=True)
    (out / "mutation.json").write_text(json.dumps(result, indent=2) + "\n")
    sections = [f"## {kind}: {KINDS[kind]} ({len(by_kind[kind])})\n\n" + "\n\n".join(by_kind[kind]) for kind in KINDS]
    (out / "mutation-survivors.txt").write_text("\n\n".join(sections) + "\n")
    print(json.dumps({key: result[key] for key in ("killed", "survived", "timeout", "total", "score")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
