"""PACS destinations: the ``[pacs.NAME]`` tables of the settings file as typed values.

A destination is either a DIMSE peer (``aet``, ``host``, ``port``: C-FIND, C-GET, C-MOVE,
C-STORE) or a DICOMweb service (``url``: QIDO-RS, WADO-RS, STOW-RS). The settings file validated
the values already (:func:`cxrlt_desktop.settings._pacs`); this module only names them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class DestinationError(ValueError):
    """An unknown destination name, or one that cannot serve the request."""


@dataclass(frozen=True)
class Destination:
    """One configured PACS: DIMSE (``aet``/``host``/``port``) or DICOMweb (``url``)."""

    name: str
    aet: str | None = None
    host: str | None = None
    port: int | None = None
    url: str | None = None

    @property
    def is_web(self) -> bool:
        """A DICOMweb destination (``url``)."""
        return self.url is not None

    def describe(self) -> str:
        """One line for messages: ``main (ORTHANC@10.0.0.5:4242)`` or ``web (http://...)``."""
        where = self.url if self.is_web else f"{self.aet}@{self.host}:{self.port}"
        return f"{self.name} ({where})"


def destination(settings: Any, name: str) -> Destination:
    """The destination ``[pacs.NAME]`` of ``settings``.

    Raises
    ------
    DestinationError
        No such table; the message lists the configured names.
    """
    table = (settings.pacs or {}).get(name)
    if table is None:
        known = ", ".join(sorted(settings.pacs or {})) or "none"
        raise DestinationError(
            f"no PACS destination {name!r} in the settings (configured: {known}); "
            f"add a [pacs.{name}] table with aet, host and port, or url"
        )
    if "url" in table:
        return Destination(name=name, url=str(table["url"]).rstrip("/"))
    return Destination(
        name=name, aet=str(table["aet"]), host=str(table["host"]), port=int(table["port"])
    )


def destinations(settings: Any) -> list[Destination]:
    """Every configured destination, by name."""
    return [destination(settings, n) for n in sorted(settings.pacs or {})]


def local_aet(settings: Any) -> str:
    """This node's AE title (``[dicom_node] aet``): the calling AE of queries, retrievals and
    sends, and the C-MOVE destination."""
    return str((settings.dicom_node or {}).get("aet") or "CXRLT")
