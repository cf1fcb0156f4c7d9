"""Locating and loading the shared OKX messages (../shared/data/okx beside the project root).

The data is required: when it is missing, the tests that use it FAIL (pytest.fail), they never skip.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
OKX = SHARED / "data" / "okx"
DOCS = OKX / "okx_docs"
BEST_PRACTICE = OKX / "okx_best_practice" / "best_practice_examples.json"
CCXT = OKX / "ccxt"
CCXT_RESPONSES = CCXT / "response_extract.json"
CCXT_REQUESTS = CCXT / "request_extract.json"
CCXT_INSTRUMENTS = CCXT / "markets_swap_instruments.json"
REST_ERROR_CSV = DOCS / "rest_error_codes_selected.csv"
WS_ERROR_CSV = DOCS / "ws_error_codes.csv"

# Not messages: descriptions of the data.
NON_MESSAGE_FILES = frozenset(
    {"PROTOCOL_RULES.md", "okx_docs/README.md", "okx_docs/PROVENANCE.tsv", "ccxt/PROVENANCE.md"}
)


def require(path: Path) -> Path:
    if not path.exists():
        pytest.fail(f"shared OKX data missing: {path} (../shared must sit beside the project)")
    return path


def all_files() -> list[str]:
    """Every file under shared/data/okx, relative; ["<missing>"] when the directory is absent, so that a
    parametrized test FAILS on it instead of being skipped for an empty parameter list."""
    if not OKX.is_dir():
        return ["<missing>"]
    return sorted(str(p.relative_to(OKX)) for p in OKX.rglob("*") if p.is_file())


def docs_json_names() -> list[str]:
    if not DOCS.is_dir():
        return ["<missing>"]
    return sorted(p.name for p in DOCS.glob("*.json"))


def raw(rel: str) -> bytes:
    return require(OKX / rel).read_bytes()


def load(rel: str) -> Any:
    return json.loads(raw(rel))


def doc(name: str) -> Any:
    return load(f"okx_docs/{name}")


def doc_raw(name: str) -> bytes:
    return raw(f"okx_docs/{name}")


def best_practice() -> list[dict[str, Any]]:
    return list(json.loads(require(BEST_PRACTICE).read_bytes())["examples"])


def ccxt_responses() -> list[dict[str, Any]]:
    return list(json.loads(require(CCXT_RESPONSES).read_bytes())["entries"])


def ccxt_requests() -> list[dict[str, Any]]:
    return list(json.loads(require(CCXT_REQUESTS).read_bytes())["entries"])


def ccxt_instruments_raw() -> bytes:
    return require(CCXT_INSTRUMENTS).read_bytes()


def dumps(obj: Any) -> bytes:
    """Re-serialise an embedded example (best-practice / CCXT entries are JSON inside JSON)."""
    return json.dumps(obj).encode()
