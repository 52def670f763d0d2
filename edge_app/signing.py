"""Who released a bundle: an Ed25519 signature over its manifest (which holds every file's size and sha256).

``manifest.sig`` beside ``manifest.json`` names the public key and holds the signature of the manifest's exact bytes.
A device that lists trusted public keys (``[model] trusted_keys``, each the one line of a ``.pub`` file written by
``mammo-convert keygen``) runs only bundles signed by one of them: an unsigned bundle, a signature that does not
verify (a manifest changed after signing) and a key it does not list are each refused by name. Two keys listed at
once let a vendor rotate keys without a gap. Without keys the check is off, and says so once.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from edge_app.errors import BundleError, ConfigError
from edge_app.manifest import MANIFEST

log = logging.getLogger(__name__)
SIGNATURE = "manifest.sig"
KEY_TYPE = "ed25519"
KEY_BYTES = 32


@dataclass(frozen=True)
class PublicKey:
    raw: bytes
    comment: str = ""

    @property
    def fingerprint(self) -> str:
        """As OpenSSH prints a key: SHA256 of the key bytes, base64 without padding."""
        return "SHA256:" + base64.b64encode(hashlib.sha256(self.raw).digest()).decode().rstrip("=")

    def line(self) -> str:
        """The ``.pub`` file's one line: ``ed25519 <base64 key> <comment>``."""
        return " ".join(part for part in (KEY_TYPE, base64.b64encode(self.raw).decode(), self.comment) if part)


def parse_public_key(line: str) -> PublicKey:
    """A ``.pub`` line; ValueError saying what is wrong with it."""
    parts = line.strip().split(maxsplit=2)
    if len(parts) < 2 or parts[0] != KEY_TYPE:
        raise ValueError(f"not an {KEY_TYPE} public key line ({KEY_TYPE} <base64 key> [comment])")
    try:
        raw = base64.b64decode(parts[1], validate=True)
    except binascii.Error:
        raise ValueError("its key is not base64") from None
    if len(raw) != KEY_BYTES:
        raise ValueError(f"its key is {len(raw)} bytes, an {KEY_TYPE} key is {KEY_BYTES}")
    return PublicKey(raw, parts[2] if len(parts) == 3 else "")


def trusted_keys(lines: tuple[str, ...]) -> tuple[PublicKey, ...]:
    """``[model] trusted_keys`` parsed; ConfigError naming the entry that is not a key."""
    keys = []
    for index, line in enumerate(lines):
        try:
            keys.append(parse_public_key(line))
        except ValueError as exc:
            raise ConfigError(f"[model] trusted_keys[{index}] {line[:40]!r}...: {exc}") from None
    return tuple(keys)


def signature_document(key: PublicKey, signature: bytes) -> bytes:
    """``manifest.sig``'s content."""
    document = {"algorithm": KEY_TYPE, "key": key.line(), "signature": base64.b64encode(signature).decode()}
    return (json.dumps(document, indent=1) + "\n").encode()


@functools.cache
def _say_unchecked() -> None:
    log.warning("[model] trusted_keys is empty: who released a bundle is not checked (only its integrity)")


def check_signature(bundle: Path, trusted: tuple[str, ...]) -> PublicKey | None:
    """The trusted key that signed `bundle`'s manifest; BundleError if it is unsigned, its signature does not verify,
    or its key is not trusted. None (and one warning per process) when no key is trusted."""
    from nacl.exceptions import BadSignatureError
    from nacl.signing import VerifyKey

    keys = trusted_keys(trusted)
    if not keys:
        _say_unchecked()
        return None
    path = Path(bundle) / SIGNATURE
    if not path.is_file():
        raise BundleError(f"{bundle} is not signed ({SIGNATURE} is missing) and this device runs signed models only")
    try:
        document = json.loads(path.read_text())
        key = parse_public_key(document["key"])
        signature = base64.b64decode(document["signature"], validate=True)
    except (ValueError, KeyError, TypeError, UnicodeDecodeError, binascii.Error) as exc:
        raise BundleError(f"{path} is not a signature file: {exc}") from None
    if key.raw not in {trusted_key.raw for trusted_key in keys}:
        raise BundleError(
            f"{bundle} is signed by key {key.fingerprint} ({key.comment or 'no comment'}), "
            "which [model] trusted_keys does not list"
        )
    try:
        VerifyKey(key.raw).verify((Path(bundle) / MANIFEST).read_bytes(), signature)
    except (BadSignatureError, ValueError):
        raise BundleError(
            f"{bundle}: the signature of {MANIFEST} by key {key.fingerprint} does not verify "
            "(the manifest was changed after it was signed, or the signature is damaged)"
        ) from None
    log.info("bundle %s signed by trusted key %s (%s)", Path(bundle).name, key.fingerprint, key.comment)
    return key
