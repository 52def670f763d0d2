"""STOW-RS forwarding (``[dicom.forward] protocol = "dicomweb"``), through dicomweb-client on a requests session.

One POST per instance, so one instance a server refuses never holds back the others. The HTTP status decides what
happens next: 2xx stored (unless the server's answer lists the instance as failed); 408, 429 and 5xx, or no answer
at all (down, refused, a TLS failure), try again later; any other 4xx means the server will not take this request as
it is (bad credentials, a wrong URL, an instance it refuses), so the instance is kept aside and reported, not retried
forever. The client's own retries are off: the outbox's backoff, which holds across restarts, is the only one.
"""

from __future__ import annotations

import logging
import ssl
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path

import pydicom
import requests
from dicomweb_client.api import DICOMwebClient

from edge_app.config import DicomForwardSection
from edge_app.dicom.forward import Delivery, Outcome
from edge_app.errors import ConfigError
from edge_app.fsutil import read_owner_only
from edge_app.strict import checked_fields

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 (JetPack 6)
    import tomli as tomllib

log = logging.getLogger(__name__)
TRANSIENT_STATUSES = frozenset({HTTPStatus.REQUEST_TIMEOUT, HTTPStatus.TOO_MANY_REQUESTS})
OUT_OF_RESOURCES = 0xA7  # a STOW-RS failure reason's high byte that means "not now" (as in DIMSE)
UNREACHABLE_REASONS = (  # what a connection failure says, as a technician reads it
    ("CERTIFICATE_VERIFY_FAILED", "its TLS certificate did not verify (is ca_file right?)"),
    ("Connection refused", "connection refused"),
    ("timed out", "no answer within timeout_seconds"),
    ("Name or service not known", "the host name does not resolve"),
)


@dataclass(frozen=True)
class Credentials:
    """What ``auth_file`` holds: ``user`` and ``password`` (HTTP basic) or ``token`` (a bearer token)."""

    user: str = ""
    password: str = ""
    token: str = ""


def read_credentials(path: Path) -> Credentials:
    """The credentials in `path`, which nobody but its owner may read or write (like an SSH key)."""
    where = f"[dicom.forward] auth_file {path}"
    text = read_owner_only(path, where, ConfigError)
    try:
        values = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where} is not TOML: {exc}") from exc
    credentials = Credentials(**checked_fields(Credentials, values, where, ConfigError))
    if any(not isinstance(value, str) for value in vars(credentials).values()):
        raise ConfigError(f"{where}: user, password and token are strings")
    basic = bool(credentials.user and credentials.password and not credentials.token)
    bearer = bool(credentials.token and not credentials.user and not credentials.password)
    if not (basic or bearer):
        raise ConfigError(f"{where} must hold either user and password (basic) or token (bearer)")
    return credentials


def trusted_authorities(forward: DicomForwardSection) -> str | bool:
    """What the server's certificate is verified against: ``ca_file``, else the system's authorities (where an
    administrator installs the hospital's own), else certifi's; False only with ``tls_verify = false``."""
    if not forward.tls_verify:
        return False
    system = ssl.get_default_verify_paths()
    return forward.ca_file or system.cafile or system.capath or True


def http_outcome(status: int) -> Outcome:
    """An HTTP error status as an outcome: 408, 429 and 5xx pass with time; another 4xx will not."""
    try:
        error = f"HTTP {status} {HTTPStatus(status).phrase}"
    except ValueError:
        error = f"HTTP {status}"
    transient = status in TRANSIENT_STATUSES or status >= 500
    return Outcome(Delivery.RETRY if transient else Delivery.REJECTED, error)


class DicomWebDestination:
    """STOW-RS to ``[dicom.forward] url``, with the credentials of ``auth_file`` and TLS verified (``ca_file``)."""

    def __init__(self, forward: DicomForwardSection) -> None:
        self.forward = forward
        session = requests.Session()
        session.trust_env = False  # the config alone says how to send: REQUESTS_CA_BUNDLE would override ca_file
        session.verify = trusted_authorities(forward)
        if not forward.tls_verify:
            log.warning("[dicom.forward] tls_verify = false: %s is not checked to be the server it says", forward.url)
        if forward.auth_file:
            credentials = read_credentials(Path(forward.auth_file))
            if credentials.token:
                session.headers["Authorization"] = f"Bearer {credentials.token}"
            else:
                session.auth = (credentials.user, credentials.password)
        self.client = DICOMwebClient(url=forward.url, session=session, timeout=forward.timeout_seconds)
        self.client.set_http_retry_params(retry=False)

    def deliver(self, due: list[Path]) -> Iterator[tuple[Path, Outcome]]:
        for path in due:
            yield path, self._store(pydicom.dcmread(path))

    def _store(self, instance: pydicom.Dataset) -> Outcome:
        try:
            answer = self.client.store_instances([instance])
        except requests.HTTPError as exc:
            if exc.response is not None:
                return http_outcome(exc.response.status_code)
            return Outcome(Delivery.RETRY, self._unreachable(exc))
        except requests.RequestException as exc:
            return Outcome(Delivery.RETRY, self._unreachable(exc))
        for failed in answer.get("FailedSOPSequence", []):
            if failed.get("ReferencedSOPInstanceUID") == instance.SOPInstanceUID:
                reason = int(failed.get("FailureReason", 0x0110))
                later = reason >> 8 == OUT_OF_RESOURCES
                return Outcome(Delivery.RETRY if later else Delivery.REJECTED, f"failed with reason 0x{reason:04X}")
        return Outcome(Delivery.STORED)

    def _unreachable(self, exc: requests.RequestException) -> str:
        text = str(exc)
        meaning = next((meaning for marker, meaning in UNREACHABLE_REASONS if marker in text), type(exc).__name__)
        return f"cannot reach {self.forward.url}: {meaning}"
