"""The study in the terminal: the best trials with in-sample beside out-of-sample, and the best settings."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from optimize.summary import StudySummary, fmt

COLUMNS = ("trades",)


def render(s: StudySummary, console: Console) -> None:
    plan = s.plan
    counts = ", ".join(f"{v} {k}" for k, v in sorted(s.counts.items()))
    console.print(f"[bold]study {plan.name}[/bold]: {counts}; objective {', '.join(plan.objectives)}")
    table = Table(title="best trials: in sample | out of sample")
    table.add_column("#", justify="right")
    for p in plan.params:
        table.add_column(p.path.rsplit(".", 1)[-1], justify="right")
    shown = list(dict.fromkeys([*plan.objectives, *COLUMNS]))
    for name in shown:
        table.add_column(f"{name} in", justify="right")
        table.add_column(f"{name} out", justify="right")
    table.add_column("out of sample")
    for row in s.rows:
        cells = [str(row.trial.number), *(fmt(row.params.get(p.path)) for p in plan.params)]
        for name in shown:
            cells += [fmt(row.ins.get(name)), fmt((row.outs or {}).get(name)) if row.outs else "–"]
        cells.append(f"[red]{row.verdict}[/red]" if row.warnings else row.verdict)
        table.add_row(*cells)
    console.print(table)
    for name, rho in s.correlation.items():
        if rho is not None:
            console.print(f"{name}: rank correlation in sample / out of sample over all trials {rho:+.2f}"
                          + ("  [red](the in-sample ranking does not carry over)[/red]" if rho < 0.3 else ""))
    if s.env:
        console.print("best settings (paste into .env or the environment):")
        for line in s.env:
            console.print(line, markup=False, highlight=False, soft_wrap=True)
