"""The vendor's side of signed bundles: ``mammo-convert keygen OUT`` makes an Ed25519 key pair (``OUT``, mode 0600,
and ``OUT.pub``, the one line a device lists in ``[model] trusted_keys``); ``mammo-convert sign BUNDLE --key OUT``
and ``mammo-convert RUN --out BUNDLE --sign OUT`` write ``manifest.sig``. The format and the device's check live in
`edge_app.signing`."""

from __future__ import annotations

import argparse
import base64
import binascii
import os
from collections.abc import Sequence
from pathlib import Path

from nacl.signing import SigningKey

from edge_app.errors import BundleError, DataError
from edge_app.fsutil import atomic_write, read_owner_only
from edge_app.manifest import MANIFEST
from edge_app.signing import SIGNATURE, PublicKey, signature_document

PRIVATE_TYPE = "ed25519-private"


def keygen(out: Path) -> Path:
    """A new key pair: the private key at `out` (mode 0600, never overwritten), the public line at `out`.pub."""
    public = out.with_name(out.name + ".pub")
    for path in (out, public):
        if path.exists():
            raise DataError(f"{path} exists: a key is never overwritten (move it away first)")
    key = SigningKey.generate()
    seed = base64.b64encode(bytes(key)).decode()
    descriptor = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(f"{PRIVATE_TYPE} {seed} {out.name}\n")
    public.write_text(PublicKey(bytes(key.verify_key), out.name).line() + "\n")
    return public


def read_private_key(path: Path) -> tuple[SigningKey, str]:
    """The signing key in `path` and its comment; refused if others may read the file (as SSH refuses)."""
    parts = read_owner_only(path, f"the signing key {path}", DataError).split(maxsplit=2)
    if len(parts) < 2 or parts[0] != PRIVATE_TYPE:
        raise DataError(f"{path} is not a signing key written by `mammo-convert keygen`")
    try:
        key = SigningKey(base64.b64decode(parts[1], validate=True))
    except (binascii.Error, ValueError) as exc:
        raise DataError(f"{path} is not a signing key: {exc}") from None
    return key, parts[2].strip() if len(parts) == 3 else path.name


def sign_bundle(bundle: Path, key_path: Path) -> PublicKey:
    """Sign `bundle`'s manifest as it is now (sign last: any later change to the manifest breaks the signature)."""
    manifest = Path(bundle) / MANIFEST
    if not manifest.is_file():
        raise BundleError(f"{bundle} is not a model bundle: {MANIFEST} not found")
    key, comment = read_private_key(key_path)
    public = PublicKey(bytes(key.verify_key), comment)
    atomic_write(Path(bundle) / SIGNATURE, signature_document(public, key.sign(manifest.read_bytes()).signature))
    return public


def key_command(argv: Sequence[str]) -> int:
    """``mammo-convert keygen OUT`` and ``mammo-convert sign BUNDLE --key KEY``."""
    parser = argparse.ArgumentParser(prog="mammo-convert", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    make = commands.add_parser("keygen", help="a new Ed25519 key pair: OUT (private, mode 0600) and OUT.pub")
    make.add_argument("out", type=Path)
    sign = commands.add_parser("sign", help="sign BUNDLE's manifest (writes manifest.sig)")
    sign.add_argument("bundle", type=Path)
    sign.add_argument("--key", type=Path, required=True, help="the private key from `mammo-convert keygen`")
    args = parser.parse_args(argv)
    if args.command == "keygen":
        public = keygen(args.out)
        print(f"private key: {args.out} (mode 0600: keep it off the devices)")
        print(f'public key: {public}; on each device, [model] trusted_keys = ["{public.read_text().strip()}"]')
    else:
        key = sign_bundle(args.bundle, args.key)
        print(f"signed {args.bundle / MANIFEST} with key {key.fingerprint} ({key.comment})")
    return 0
