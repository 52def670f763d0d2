"""Installed model versions, and the one link the service reads.

Beside the configured bundle path (``[model] bundle``, ``/var/lib/mammo-edge/bundle`` by default)::

    bundle -> models/<version>            the live version: a relative symlink, switched by one rename
    bundle.previous -> models/<version>   what `rollback` returns to
    models/<version>/                     every installed version, verified before it was linked, never modified

A bundle is copied into a hidden staging folder, verified there (its signature by a trusted key where keys are
configured, schema, every file's sha256, the self-test on its own sample with this device's runtime) and only then
renamed into ``models/`` and linked, so a corrupt or failing bundle never reaches the link and the version serving
goes on serving. A folder (not a link) at the bundle path, as older installs left it, is adopted as the version its
manifest names.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from edge_app.errors import BundleError
from edge_app.fsutil import fsync_dir
from edge_app.manifest import MANIFEST, Manifest, load_manifest
from edge_app.model import EdgeModel
from edge_app.selftest import SelfTestReport, check_selftest
from edge_app.signing import check_signature

log = logging.getLogger(__name__)

MODELS = "models"
PREVIOUS_SUFFIX = ".previous"


@dataclass(frozen=True)
class InstalledVersion:
    version: str
    path: Path
    live: bool
    previous: bool


@dataclass(frozen=True)
class Switch:
    """What an install or a rollback did: the version now live, the one before it, and the self-test it passed."""

    live: str
    previous: str | None
    selftest: SelfTestReport


class ModelStore:
    """The versions beside `link` (the configured bundle path); `variant`, `runtime` and `threads` are the service's,
    so the self-test runs what the service will."""

    def __init__(
        self, link: Path, variant: str, runtime: str, threads: int, trusted_keys: tuple[str, ...] = ()
    ) -> None:
        self.link = Path(link)
        self.models = self.link.parent / MODELS
        self.previous_link = self.link.with_name(self.link.name + PREVIOUS_SUFFIX)
        self.variant, self.runtime, self.threads = variant, runtime, threads
        self.trusted_keys = trusted_keys

    def live(self) -> str | None:
        return _target_version(self.link)

    def previous(self) -> str | None:
        return _target_version(self.previous_link)

    def versions(self) -> list[InstalledVersion]:
        self._adopt_folder()
        if not self.models.is_dir():
            return []
        live, previous = self.live(), self.previous()
        return [
            InstalledVersion(path.name, path, path.name == live, path.name == previous)
            for path in sorted(self.models.iterdir(), key=lambda p: p.stat().st_ctime)  # renamed in: installed
            if path.is_dir() and not path.name.startswith(".")
        ]

    def install(self, bundle: Path) -> Switch:
        """Verify `bundle`, copy it in as its manifest's version and make it live (the live one becomes previous)."""
        self._adopt_folder()
        manifest = load_manifest(bundle)
        version = _checked_version(manifest)
        target = self.models / version
        if target.exists():
            if (target / MANIFEST).read_bytes() != (Path(bundle) / MANIFEST).read_bytes():
                raise BundleError(
                    f"version {version} is installed already with other files: give the new bundle its own version "
                    "(mammo-convert --model-version)"
                )
            report = self._verified(target)  # the same bundle again: installing it only makes it live
        else:
            self.models.mkdir(parents=True, exist_ok=True)
            staging = self.models / f".{version}.staging"
            shutil.rmtree(staging, ignore_errors=True)
            try:
                shutil.copytree(bundle, staging)
                report = self._verified(staging)
                _seal(staging)
                staging.rename(target)
                fsync_dir(self.models)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
        return self._switch_to(version, report)

    def rollback(self) -> Switch:
        """Make the previous version live again (after checking it still verifies); the live one becomes previous."""
        self._adopt_folder()
        previous = self.previous()
        if previous is None:
            raise BundleError(f"there is no previous model to roll back to ({self.previous_link} is not set)")
        target = self.models / previous
        if not target.is_dir():
            raise BundleError(f"the previous model {previous} is no longer installed ({target} is missing)")
        return self._switch_to(previous, self._verified(target))

    def _verified(self, folder: Path) -> SelfTestReport:
        check_signature(folder, self.trusted_keys)
        model = EdgeModel.load(folder, self.variant, self.runtime, self.threads, heatmaps=False)
        return check_selftest(model)

    def _switch_to(self, version: str, report: SelfTestReport) -> Switch:
        live = self.live()
        if live is not None and live != version:
            _point(self.previous_link, live)
        _point(self.link, version)
        log.info("model %s is live (previous: %s)", version, self.previous())
        return Switch(version, self.previous(), report)

    def _adopt_folder(self) -> None:
        """A bundle folder at the link's path (an older install) moves into models/ and is linked from there."""
        if self.link.is_symlink() or not self.link.is_dir():
            return
        version = _checked_version(load_manifest(self.link, verify_files=False))
        self.models.mkdir(exist_ok=True)  # beside the link: its folder exists
        if (self.models / version).exists():
            raise BundleError(f"{self.link} is a folder and models/{version} exists too: move one of them away")
        self.link.rename(self.models / version)
        _point(self.link, version)
        log.info("adopted the bundle folder %s as model version %s", self.link, version)


def _checked_version(manifest: Manifest) -> str:
    version = manifest.version
    if not version or version.startswith(".") or "/" in version or version != version.strip():
        raise BundleError(f"the bundle's version {version!r} cannot name a folder")
    return version


def _target_version(link: Path) -> str | None:
    return Path(os.readlink(link)).name if link.is_symlink() else None


def _point(link: Path, version: str) -> None:
    """Atomically make `link` a relative symlink to models/<version>: a new link renamed over the old one."""
    temporary = link.with_name(f".{link.name}.new")
    temporary.unlink(missing_ok=True)
    temporary.symlink_to(Path(MODELS) / version)
    temporary.replace(link)
    fsync_dir(link.parent)


def _seal(folder: Path) -> None:
    """Readable by the service user whatever modes the bundle arrived with (a converter's staging folder is 0700),
    writable by nobody but root, and on disk before it is linked."""
    for path in [folder, *folder.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
        if path.is_file():
            with path.open("rb") as handle:
                os.fsync(handle.fileno())
    fsync_dir(folder)
