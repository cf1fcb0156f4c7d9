"""The layers go one way: a package imports only from the packages before it in LAYERS.

config → indicators → reports → statemachines → exchanges → feeds → workers → backtest → optimize → scalper

A lower layer never reaches up (the pure decisions in statemachines/ know nothing of Redis workers or the
command line; the backtest builds on workers/ and the CLI on everything). The few exceptions are listed
with their reason; a new one fails this test until it is fixed or listed.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ["config", "indicators", "reports", "statemachines", "exchanges", "feeds", "workers", "backtest",
          "optimize", "scalper"]  # fmt: skip

KNOWN = {
    # The exchange's data types (Instrument, Order, ...) are the model every layer shares.
    ("statemachines/risk.py", "exchanges.base"),
    # The paper venue's process answers on the engine's event stream, in its encoding.
    ("exchanges/paper/venue.py", "workers.events"),
    # A worker process builds its exchange and Redis clients as the command line does.
    ("workers/account.py", "scalper.connect"),
    ("workers/orders.py", "scalper.connect"),
}


def upward_imports() -> set[tuple[str, str]]:
    rank = {name: i for i, name in enumerate(LAYERS)}
    found = set()
    for package in LAYERS:
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    modules = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    modules = [node.module]
                else:
                    continue
                for module in modules:
                    top = module.split(".")[0]
                    if top in rank and rank[top] > rank[package]:
                        found.add((str(path.relative_to(ROOT)), module))
    return found


def test_no_layer_imports_from_a_later_one() -> None:
    assert upward_imports() - KNOWN == set()


def test_the_known_exceptions_are_still_real() -> None:
    """An exception that was fixed leaves the list, so the list stays the truth."""
    assert KNOWN - upward_imports() == set()


def test_every_package_is_in_a_layer() -> None:
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")} - {"tests"}
    assert packages <= set(LAYERS), packages - set(LAYERS)
