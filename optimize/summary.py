"""A finished study as data: its best trials with in-sample and out-of-sample side by side, the verdict on
each, and the best settings as environment lines. The terminal (optimize/terminal.py) and the HTML page
(optimize/page.py) both show this."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from optimize.coordinator import Plan
from optimize.params import env_line
from optimize.verdict import disagreement, rank_correlation


@dataclass(frozen=True)
class Row:
    trial: FrozenTrial
    params: dict[str, Any]
    ins: dict[str, Any]
    outs: dict[str, Any] | None
    warnings: list[str]

    @property
    def verdict(self) -> str:
        """Out of sample: where it disagrees with in sample, or that it does not."""
        if self.warnings:
            return "; ".join(self.warnings)
        return "consistent" if self.outs else "no test window"


@dataclass(frozen=True)
class StudySummary:
    plan: Plan
    rows: list[Row]  # best first
    counts: dict[str, int]  # trials by state
    correlation: dict[str, float | None]  # objective -> rank correlation in/out of sample
    env: list[str]  # the best trial's settings, ready to paste

    @property
    def best(self) -> Row | None:
        return self.rows[0] if self.rows else None


def best_trials(study: optuna.Study, plan: Plan, top: int) -> list[FrozenTrial]:
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(plan.objectives) > 1:  # the Pareto front, by the first objective
        front = study.best_trials
        sign = -1 if study.directions[0] == optuna.study.StudyDirection.MAXIMIZE else 1
        return sorted(front, key=lambda t: (sign * t.values[0], t.number))[:top]
    sign = -1 if study.direction == optuna.study.StudyDirection.MAXIMIZE else 1
    return sorted(done, key=lambda t: (sign * t.values[0], t.number))[:top]


def summarize(study: optuna.Study, plan: Plan, top: int = 10) -> StudySummary:
    rows = []
    for t in best_trials(study, plan, top):
        ins, outs = t.user_attrs.get("in") or {}, t.user_attrs.get("out")
        warnings = [w for o in plan.objectives if (w := disagreement(ins, outs, o))]
        rows.append(Row(t, dict(t.params), ins, outs, warnings))
    counts: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        counts[t.state.name.lower()] = counts.get(t.state.name.lower(), 0) + 1
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    tested = [t for t in done if t.user_attrs.get("out")]
    correlation = {
        o: rank_correlation([(t.user_attrs["in"][o] or 0.0, t.user_attrs["out"][o] or 0.0) for t in tested])
        for o in plan.objectives
    }
    env = env_lines(rows[0].params) if rows else []
    return StudySummary(plan, rows, counts, correlation, env)


def env_lines(values: dict[str, Any]) -> list[str]:
    """SCALPER_SECTION__FIELD=value per global setting; per-symbol ones as one SCALPER_SYMBOLS JSON (it
    replaces the symbol list: every traded symbol must be in it)."""
    lines, symbols = [], {}
    for path, value in sorted(values.items()):
        if path.startswith("symbols."):
            _, rest = path.split(".", 1)
            head, field = rest.rsplit(".", 1)
            symbol, section = head.rsplit(".", 1)
            symbols.setdefault(symbol, {}).setdefault(section, {})[field] = value
        else:
            lines.append(env_line(path, value))
    if symbols:
        lines.append(f"SCALPER_SYMBOLS='{json.dumps(symbols)}'")
    return lines


def fmt(x: Any) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        return f"{x:,.2f}" if abs(x) < 1e6 else "inf"
    return str(x)
