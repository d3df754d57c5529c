"""Structured (JSON lines) logging without patient identifiers.

Modules log a short message plus ``extra={...}`` fields (UIDs, counts, statuses). Keys
that could carry patient identity are dropped here as a last line of defence.
"""

from __future__ import annotations

import json
import logging
import sys

#: Never written to a log, whatever a caller passes (PS3.15 Annex E basic profile names).
FORBIDDEN_KEYS = frozenset({"patientname", "patientid", "patientbirthdate", "patient_name",
                            "patient_id", "patient_birth_date", "otherpatientids"})
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and the record's extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        out = {"ts": round(record.created, 3), "level": record.levelname, "logger": record.name,
               "msg": record.getMessage()}
        for key, value in vars(record).items():
            if key not in _STANDARD and key.lower() not in FORBIDDEN_KEYS:
                out[key] = value if isinstance(value, (int, float, bool, type(None))) else str(value)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out)


def setup_logging(level: int = logging.INFO) -> None:
    """Send JSON lines to stderr (called by the CLI only, never at import)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)
