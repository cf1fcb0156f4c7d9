"""How log records are written: a line of text for a person, or a JSON object per line for a collector
(`SCALPER_LOG__FORMAT=json`). The records are the same either way: the same messages, from which secrets are
kept out where they are made (README, Security)."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

TEXT = "%(asctime)s %(name)s %(levelname)s %(message)s"


class JsonLines(logging.Formatter):
    """One JSON object per record: time (ISO 8601, UTC, milliseconds), level, logger, message, and the
    traceback as `exception` when the record carries one."""

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exception"] = record.exc_text
        return json.dumps(out, ensure_ascii=False)


def configure(verbose: bool, fmt: str = "text") -> None:
    """The root logger's one handler, on stderr, in `fmt` (text or json); called again once the settings
    are read, it replaces the formatter."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format=TEXT)
    if fmt == "json":
        for handler in logging.getLogger().handlers:
            handler.setFormatter(JsonLines())
