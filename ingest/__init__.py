"""Ingestion: MQTT payloads -> validated, QC-flagged, deduplicated readings in the store.

- :func:`parse_payload` / :func:`parse_message` (pure): the MQTT contract, calibration.
- :mod:`ingest.qc` (pure): QARTOD-style tests; :class:`QcChecker` keeps per-station history.
- :class:`IngestService`: the paho subscriber, writer thread, manual acks and spool.
"""

from __future__ import annotations

from floodwatch.ingest.checker import QcChecker
from floodwatch.ingest.payload import ParsedMessage, TipCounters, parse_message, parse_payload
from floodwatch.ingest.service import IngestService

__all__ = ["IngestService", "ParsedMessage", "QcChecker", "TipCounters", "parse_message", "parse_payload"]
