"""Signed bundles: the vendor's key pair and signature (mammo-convert keygen / sign) and the device's refusal of an
unsigned bundle, a tampered manifest and an unknown key, wherever a model is taken into service (model install and
rollback, the service's start, selftest). Key rotation: two trusted keys at once."""

from __future__ import annotations

import json
import logging
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from fakemodel import FAKE_RUNTIME, write_fake_bundle

import edge_app.model as model_module
from edge_app import signing
from edge_app.cli import _load_analyser
from edge_app.cli import main as edge_main
from edge_app.config import resolve_config
from edge_app.errors import EXIT_OK, EXIT_REFUSED, BundleError, ConfigError, DataError
from edge_app.manifest import MANIFEST
from edge_app.signing import SIGNATURE, check_signature, parse_public_key
from edge_app.store import ModelStore
from mammo_convert.cli import main as convert_main
from mammo_convert.signing import keygen, sign_bundle


@pytest.fixture(autouse=True)
def fake_runtime(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(model_module, "load_runtime", lambda name: FAKE_RUNTIME)
    yield


def _key(folder: Path, name: str) -> tuple[Path, str]:
    """A key pair made by the CLI; the private key's path and the public line a device trusts."""
    folder.mkdir(parents=True, exist_ok=True)
    assert convert_main(["keygen", str(folder / name)]) == 0
    return folder / name, (folder / f"{name}.pub").read_text().strip()


def _signed(folder: Path, version: str, key: Path) -> Path:
    bundle = write_fake_bundle(folder, version=version)
    assert convert_main(["sign", str(bundle), "--key", str(key)]) == 0
    return bundle


def test_keygen_writes_a_private_key_only_its_owner_reads_and_a_one_line_public_key(tmp_path: Path) -> None:
    private, public = _key(tmp_path, "vendor-2026")
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert len((tmp_path / "vendor-2026.pub").read_text().splitlines()) == 1
    key = parse_public_key(public)
    assert public.startswith("ed25519 ") and key.comment == "vendor-2026" and len(key.raw) == 32
    with pytest.raises(DataError, match="exists: a key is never overwritten"):
        keygen(private)
    private.chmod(0o644)
    with pytest.raises(DataError, match=r"open to other users \(mode 0644\): chmod 600"):
        sign_bundle(write_fake_bundle(tmp_path / "b"), private)


def test_with_keys_only_a_bundle_signed_by_a_trusted_key_is_accepted(tmp_path: Path) -> None:
    vendor, vendor_public = _key(tmp_path / "keys", "vendor")
    stranger, _ = _key(tmp_path / "keys", "stranger")
    trusted = (vendor_public,)
    signed = _signed(tmp_path / "signed", "1", vendor)
    document = json.loads((signed / SIGNATURE).read_text())
    assert document["algorithm"] == "ed25519" and document["key"] == vendor_public
    accepted = check_signature(signed, trusted)
    assert accepted is not None and accepted.line() == vendor_public

    with pytest.raises(BundleError, match=r"is not signed \(manifest.sig is missing\)"):
        check_signature(write_fake_bundle(tmp_path / "unsigned", version="2"), trusted)
    foreign = _signed(tmp_path / "foreign", "3", stranger)
    fingerprint = parse_public_key((tmp_path / "keys" / "stranger.pub").read_text()).fingerprint
    with pytest.raises(BundleError) as refused:
        check_signature(foreign, trusted)
    assert f"signed by key {fingerprint} (stranger), which [model] trusted_keys does not list" in str(refused.value)
    tampered = _signed(tmp_path / "tampered", "4", vendor)
    manifest = json.loads((tampered / MANIFEST).read_text())
    manifest["threshold"] = 0.01  # every file's hash still holds: only the signature can tell
    (tampered / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    with pytest.raises(BundleError, match=r"signature of manifest\.json by key .* does not verify"):
        check_signature(tampered, trusted)
    (signed / SIGNATURE).write_text("{not json")
    with pytest.raises(BundleError, match=r"manifest\.sig is not a signature file"):
        check_signature(signed, trusted)


def test_two_trusted_keys_let_a_vendor_rotate_without_a_gap(tmp_path: Path) -> None:
    old, old_public = _key(tmp_path / "keys", "vendor-2025")
    new, new_public = _key(tmp_path / "keys", "vendor-2026")
    both = (old_public, new_public)
    for name, key in (("before", old), ("after", new)):
        assert check_signature(_signed(tmp_path / name, name, key), both) is not None
    with pytest.raises(BundleError, match="which \\[model\\] trusted_keys does not list"):
        check_signature(tmp_path / "before", (new_public,))  # the old key retired


def test_without_keys_nothing_is_refused_and_the_device_says_so_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    signing._say_unchecked.cache_clear()
    caplog.set_level(logging.WARNING, logger="edge_app.signing")
    for version in ("1", "2"):
        assert check_signature(write_fake_bundle(tmp_path / version, version=version), ()) is None
    assert [record.message for record in caplog.records].count(
        "[model] trusted_keys is empty: who released a bundle is not checked (only its integrity)"
    ) == 1


def test_install_rollback_and_the_service_refuse_what_is_not_signed_by_a_trusted_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    vendor, vendor_public = _key(tmp_path / "keys", "vendor")
    link = tmp_path / "device" / "bundle"
    config = tmp_path / "config.toml"
    config.write_text(f'[model]\nbundle = "{link}"\ntrusted_keys = ["{vendor_public}"]\n')
    given = ["--config", str(config), "--no-restart"]
    assert edge_main(["model", "install", str(_signed(tmp_path / "v1", "1", vendor)), *given]) == EXIT_OK
    assert edge_main(["model", "install", str(write_fake_bundle(tmp_path / "v2", version="2")), *given]) == (
        EXIT_REFUSED
    )
    assert "is not signed (manifest.sig is missing)" in capsys.readouterr().err
    assert edge_main(["model", "install", str(_signed(tmp_path / "v3", "3", vendor)), *given]) == EXIT_OK
    assert _load_analyser(resolve_config(config, environ={})).identity.version == "3"  # the service starts on it

    live = link.resolve()
    (live / SIGNATURE).unlink()  # the live model's signature lost on the device
    with pytest.raises(BundleError, match="is not signed"):
        _load_analyser(resolve_config(config, environ={}))
    assert edge_main(["selftest", "--config", str(config)]) == EXIT_REFUSED
    store = ModelStore(link, "int8", "auto", 1, (vendor_public,))
    assert store.rollback().live == "1"  # the previous version, still signed


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("ssh-ed25519 AAAA", "not an ed25519 public key line"),
        ("ed25519 not-base64!", "its key is not base64"),
        ("ed25519 AAAA", "its key is 3 bytes, an ed25519 key is 32"),
    ],
)
def test_a_trusted_key_that_is_not_a_key_is_a_config_error_naming_it(tmp_path: Path, key: str, message: str) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'[model]\ntrusted_keys = ["ed25519 {"A" * 43}=", "{key}"]\n')
    with pytest.raises(ConfigError, match=rf"\[model\] trusted_keys\[1\] .*: {message}"):
        resolve_config(config, environ={})


@pytest.mark.slow
def test_a_conversion_with_sign_writes_a_bundle_the_device_accepts_with_that_key_only(bundle: Path) -> None:
    """The session's plumbing bundle was converted with ``--sign`` (tests/modelbuild.py): its signature verifies
    against the key it was made with, and is refused by a device trusting another."""
    public = bundle.parent / "vendor-key.pub"
    if not public.exists():
        pytest.skip(f"{bundle} was given (MAMMO_TEST_BUNDLE), not converted with --sign by this session")
    accepted = check_signature(bundle, (public.read_text().strip(),))
    assert accepted is not None and accepted.comment == "vendor-key"
    other = tmp_key_line()
    with pytest.raises(BundleError, match="which \\[model\\] trusted_keys does not list"):
        check_signature(bundle, (other,))


def tmp_key_line() -> str:
    """A public key nobody signed with."""
    from nacl.signing import SigningKey

    return signing.PublicKey(bytes(SigningKey.generate().verify_key), "other").line()
