"""Fuzzing what reads untrusted bytes: the scan decoders, the region sidecar parser and the configuration loader. Each
either answers or raises the project's own error with a reason; anything else (a crash, another exception) fails.

Inputs are random bytes and structured mutations of valid files (bytes flipped, cut, spliced, repeated). CI runs a
fixed, derandomised budget (the same examples every run); ``pytest --long`` runs 50 times more, randomised. Every
crash found became a case of its own below or in the corpus.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from corpus import patch, pil_bytes, png
from dicomfiles import dicom_bytes
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from edge_app.config import resolve_config
from edge_app.decode import decode_bytes
from edge_app.errors import ConfigError, MammoEdgeError, RegionError
from edge_app.regions import parse_sidecar

SHORT, LONG_FACTOR = 200, 50


def _fuzz(long_mode: bool, strategy: st.SearchStrategy[Any], check: Callable[[Any], None], short: int = SHORT) -> None:
    @settings(
        max_examples=short * LONG_FACTOR if long_mode else short,
        deadline=None,
        derandomize=not long_mode,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(strategy)
    def run(value: Any) -> None:
        check(value)

    run()


def _seeds() -> list[bytes]:
    image = Image.fromarray(patch())
    return [
        png(patch()),
        png(patch().astype(np.uint16) * 200),
        pil_bytes(image, "JPEG"),
        pil_bytes(image, "TIFF"),
        pil_bytes(image, "TIFF", compression="tiff_lzw"),
        pil_bytes(image, "BMP"),
        pil_bytes(image, "PPM"),
        dicom_bytes(patch()),
        dicom_bytes(patch().astype(np.uint16) * 6, BitsStored=10, HighBit=9, WindowCenter=400, WindowWidth=600),
    ]


SEEDS = _seeds()


@st.composite
def mutated(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    """A valid file with a few structured mutations: flipped bytes, a cut, a spliced or repeated stretch."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 4))):
        action = draw(st.sampled_from(("flip", "cut", "splice", "repeat", "zero")))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if action == "flip" and data:
            data[at] = draw(st.integers(0, 255))
        elif action == "cut":
            del data[at:]
        elif action == "splice":
            data[at:at] = draw(st.binary(min_size=1, max_size=64))
        elif action == "repeat":
            data[at:at] = data[at : at + draw(st.integers(1, 256))] * draw(st.integers(1, 8))
        else:
            data[at : at + draw(st.integers(1, 32))] = b"\0" * 4
    return bytes(data)


def _decodes_or_refuses(data: bytes) -> None:
    try:
        image = decode_bytes(data, max_pixels=1_000_000)
    except MammoEdgeError as exc:
        assert str(exc), "a refusal without a reason"
        return
    assert image.pixels.dtype == np.uint8 and image.pixels.ndim == 2 and image.pixels.size > 0


def test_the_decoders_answer_or_refuse_random_bytes(long_mode: bool) -> None:
    heads = st.sampled_from(
        [b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"II*\x00", b"MM\x00*", b"BM", b"P5", b"\0" * 128 + b"DICM"]
    )
    _fuzz(long_mode, st.builds(lambda head, tail: head + tail, heads, st.binary(max_size=2048)), _decodes_or_refuses)


def test_the_decoders_answer_or_refuse_mutated_valid_files(long_mode: bool) -> None:
    _fuzz(long_mode, mutated(SEEDS), _decodes_or_refuses, short=400)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
REGION_KEYS = st.sampled_from(["x", "y", "radius", "box", "label", "regions", "r"])
REGION = st.dictionaries(REGION_KEYS, JSON | st.integers(-10, 100) | st.lists(st.integers(-10, 100), max_size=5))


def _parses_or_refuses(kind: str, data: bytes) -> None:
    try:
        regions = parse_sidecar(kind, data, 48, 40)
    except RegionError as exc:
        assert str(exc)
        return
    boxes = [region.bounds(48, 40) for region in regions]
    assert boxes and all(0 <= b.x0 < b.x1 <= 48 and 0 <= b.y0 < b.y1 <= 40 for b in boxes), boxes


def test_the_sidecar_parser_answers_or_refuses(long_mode: bool) -> None:
    import json

    documents = st.one_of(
        JSON.map(lambda value: json.dumps(value).encode()),
        st.lists(REGION, max_size=20).map(lambda regions: json.dumps({"regions": regions}).encode()),
        st.binary(max_size=256),
        mutated([b'{"regions": [{"label": "A", "x": 24, "y": 20, "radius": 8}, {"box": [1, 2, 30, 30]}]}']),
    )
    _fuzz(long_mode, documents, lambda data: _parses_or_refuses("roi", data), short=400)


def test_the_mask_parser_answers_or_refuses(long_mode: bool) -> None:
    mask = np.zeros((40, 48), np.uint8)
    mask[10:20, 5:30] = 255
    _fuzz(long_mode, mutated([png(mask)]), lambda data: _parses_or_refuses("mask", data))


SECTIONS = ("model", "paths", "ingest", "scope", "journal", "log", "dicom", "nonsense")
TOML_VALUE = st.one_of(
    st.integers(-(2**40), 2**40).map(str),
    st.floats(allow_nan=True).map(lambda v: repr(v).replace("inf", "inf").replace("nan", "nan")),
    st.text(max_size=12).map(lambda text: '"' + text.replace("\\", "").replace('"', "") + '"'),
    st.sampled_from(["true", "false", "[]", "[1, 2]", '["a"]', "{}", "{a = 1}", "1979-05-27"]),
)
KEYS = st.sampled_from(
    ["bundle", "variant", "runtime", "threads", "settle_seconds", "max_pixels", "queue_limit", "level", "port", "x"]
)


def test_the_config_loader_answers_or_refuses(long_mode: bool, tmp_path: Path) -> None:
    file = tmp_path / "config.toml"
    sections = st.lists(
        st.tuples(st.sampled_from(SECTIONS), st.lists(st.tuples(KEYS, TOML_VALUE), max_size=4)), max_size=4
    ).map(lambda parts: "".join(f"[{name}]\n" + "".join(f"{k} = {v}\n" for k, v in items) for name, items in parts))
    valid = b'[model]\nbundle = "/opt/b"\nthreads = 2\n\n[ingest]\nsettle_seconds = 1.5\nrecursive = true\n'
    texts = st.one_of(sections.map(str.encode), mutated([valid]), st.binary(max_size=128))

    def loads_or_refuses(data: bytes) -> None:
        file.write_bytes(data)
        try:
            resolve_config(file, environ={})
        except ConfigError as exc:
            assert str(exc)

    _fuzz(long_mode, texts, loads_or_refuses)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\x80", r"config\.toml: not valid TOML: 'utf-8' codec can't decode byte 0x80"),
        (b"[ingest]\nsettle_seconds = nan\n", r"^\[ingest\] settle_seconds must be float, got nan$"),
        (b"[ingest]\nsettle_seconds = -inf\n", r"^\[ingest\] settle_seconds must be float, got -inf$"),
        (b"[model]\nthreads = inf\n", r"^\[model\] threads must be int, got inf$"),
    ],
    ids=["not-utf8", "nan-switches-a-limit-off", "infinite", "infinite-int"],
)
def test_config_files_the_fuzzer_broke_are_refused_with_a_reason(tmp_path: Path, data: bytes, reason: str) -> None:
    file = tmp_path / "config.toml"
    file.write_bytes(data)
    with pytest.raises(ConfigError, match=reason):
        resolve_config(file, environ={})


@pytest.mark.parametrize(
    "data",
    [b"\0" * 128 + b"DICM\x02\x00\x00\x00UL\x04\x00\xce", b"\0" * 128 + b"DICM\x02\x00\x10\x00UI\x04\x001.2\0"],
    ids=["meta-length-cut", "syntax-not-a-transfer-syntax"],
)
def test_dicom_files_the_fuzzer_broke_are_refused_as_corrupted(data: bytes) -> None:
    with pytest.raises(MammoEdgeError, match=r"^the DICOM file"):
        decode_bytes(data)
