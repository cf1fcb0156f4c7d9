"""The DATA arguments of the command line as files: a path, a shell-style pattern (expanded here, sorted, so
the same arguments always give the same files in the same order), or `sample` (the bars shipped with
scalper); any of them may be written `SYMBOL=...` to say which instrument the data is."""

from __future__ import annotations

import glob
import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from feeds.data.errors import DataError

SAMPLE = "sample"
_NAMED = re.compile(r"^([A-Z0-9]{1,20}(?:-[A-Z0-9]{1,20}){1,3})=(.+)$")  # an OKX instrument id, then '='
_PATTERN = re.compile(r"[*?\[]")


def sample_path() -> Path:
    return Path(str(resources.files("feeds") / "sample" / "btc_perp_1m_sample.csv.gz"))


@dataclass(frozen=True)
class DataArg:
    path: Path
    symbol: str | None  # the instrument the argument names, if it does


def expand(args: Sequence[str]) -> list[DataArg]:
    """Each argument's files, in the order given; a file named twice for one instrument is read once (the
    same file given as two instruments is read for each)."""
    out: dict[tuple[Path, str | None], DataArg] = {}
    for arg in args:
        named = _NAMED.match(arg)
        symbol, spec = (named[1], named[2]) if named else (None, arg)
        for path in _paths(spec):
            out.setdefault((path.resolve(), symbol), DataArg(path, symbol))
    return list(out.values())


def _paths(spec: str) -> list[Path]:
    if spec == SAMPLE:
        return [sample_path()]
    if _PATTERN.search(spec) and not Path(spec).exists():
        found = sorted(glob.glob(spec, recursive=True))
        if not found:
            raise DataError(spec, 0, "no file matches this pattern")
        return [Path(p) for p in found]
    return [Path(spec)]
