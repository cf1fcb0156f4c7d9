"""The study's HTML page, one self-contained file: the best trials (in sample beside out of sample, and
where they disagree), the best settings, the optimisation history, parameter importance, a sweep's heat map,
and the best trial's own backtest report (reports/html.py), all on one page with plotly.js inlined once."""

from __future__ import annotations

import html
import warnings
from typing import Any

import optuna
import plotly.graph_objects as go
import plotly.io as pio
from optuna.trial import TrialState

from optimize.summary import StudySummary, fmt
from reports.html import CSS, body_html
from reports.report import Report

_CSS = "td.disagree { color: #c00; font-weight: 600 } div.wide { overflow-x: auto }"
_CONFIG = {"displaylogo": False}
_LAYOUT = {"template": "plotly_white", "margin": {"l": 60, "r": 20, "t": 40, "b": 40}, "height": 380}


def render_page(study: optuna.Study, s: StudySummary, best_report: Report | None) -> str:
    figures = [history_figure(study, s), importance_figure(study)]
    if s.plan.grid:
        figures.append(heatmap_figure(study, s))
    shown = [f for f in figures if f is not None]
    charts = [
        pio.to_html(f, include_plotlyjs=i == 0, full_html=False, div_id=f"study{i}", config=_CONFIG)
        for i, f in enumerate(shown)
    ]
    title = f"scalper {'sweep' if s.plan.grid else 'optimisation'}: {s.plan.name}"
    best = ""
    if best_report is not None and s.best is not None:
        best = (f"<h2>The best trial ({s.best.trial.number}) over the whole data</h2>"
                + body_html(best_report, include_plotlyjs=not charts, id_prefix="best"))  # fmt: skip
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>", f"<style>{CSS}{_CSS}</style>", "</head>", "<body>",
        f"<h1>{html.escape(title)}</h1>", _plan_html(s), _best_html(s), _env_html(s), *charts, best,
        "</body>", "</html>", "",
    ])  # fmt: skip


def _plan_html(s: StudySummary) -> str:
    p = s.plan
    rows = {
        "data": ", ".join(p.data), "in sample": _window(p.in_sample),
        "out of sample": _window(p.out_of_sample) if p.out_of_sample else "none (--test-fraction 0)",
        "parameters": "; ".join(f"{x.path} = {x.text}" for x in p.params),
        "settings": "; ".join(p.sets) or "defaults", "objective": ", ".join(p.objectives),
        "seed": str(p.seed), "batch": str(p.batch),
        "trials": ", ".join(f"{v} {k}" for k, v in sorted(s.counts.items())),
    }  # fmt: skip
    for name, rho in s.correlation.items():
        if rho is not None:
            rows[f"{name}: rank correlation in/out of sample"] = f"{rho:+.2f}"
    body = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows.items())
    return f"<h2>Study</h2><table>{body}</table>"


def _window(w: Any) -> str:
    from reports.fmt import iso

    start, end = w
    return f"{iso(start) if start else 'start of data'} → {iso(end) if end else 'end of data'}"


def _best_html(s: StudySummary) -> str:
    names = list(dict.fromkeys([*s.plan.objectives, "net_pnl", "sharpe", "max_drawdown", "trades"]))
    head = "".join(f"<th>{html.escape(p.path)}</th>" for p in s.plan.params)
    head += "".join(f"<th>{n} in sample</th><th>{n} out of sample</th>" for n in names)
    rows = []
    for r in s.rows:
        cells = "".join(f"<td>{fmt(r.params.get(p.path))}</td>" for p in s.plan.params)
        cells += "".join(f"<td>{fmt(r.ins.get(n))}</td><td>{fmt((r.outs or {}).get(n))}</td>" for n in names)
        verdict = r.verdict
        cls = ' class="disagree"' if r.warnings else ""
        rows.append(f"<tr><td>{r.trial.number}</td>{cells}<td{cls}>{html.escape(verdict)}</td></tr>")
    table = f"<table><tr><th>trial</th>{head}<th>out of sample</th></tr>{''.join(rows)}</table>"
    return f'<h2>Best trials: in sample | out of sample</h2><div class="wide">{table}</div>'


def _env_html(s: StudySummary) -> str:
    if not s.env:
        return "<p>No trial completed.</p>"
    return "<h2>Best settings</h2><pre>" + html.escape("\n".join(s.env)) + "</pre>"


def history_figure(study: optuna.Study, s: StudySummary) -> go.Figure:
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    name = s.plan.objectives[0]
    xs = [t.number for t in done]
    fig = go.Figure(go.Scatter(x=xs, y=[t.values[0] for t in done], mode="markers", name=f"{name} in sample"))
    outs = [(t.number, (t.user_attrs.get("out") or {}).get(name)) for t in done]
    outs = [(n, v) for n, v in outs if v is not None]
    fig.add_trace(go.Scatter(x=[n for n, _ in outs], y=[v for _, v in outs], mode="markers",
                             name=f"{name} out of sample", marker={"symbol": "x"}))  # fmt: skip
    better = max if study.directions[0] == optuna.study.StudyDirection.MAXIMIZE else min
    best, run = [], None
    for t in done:
        run = t.values[0] if run is None else better(run, t.values[0])
        best.append(run)
    fig.add_trace(go.Scatter(x=xs, y=best, mode="lines", name="best so far", line={"shape": "hv"}))
    fig.update_layout(**_LAYOUT, title=f"Optimisation history: {name}", xaxis_title="trial")
    return fig


def importance_figure(study: optuna.Study) -> go.Figure | None:
    """PED-ANOVA importance of each parameter for the first objective (none with too few trials)."""
    sign = -1.0 if study.directions[0] == optuna.study.StudyDirection.MAXIMIZE else 1.0  # it ranks low values
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "it ranks low values": the sign sees to it
            imp = optuna.importance.get_param_importances(
                study, evaluator=optuna.importance.PedAnovaImportanceEvaluator(),
                target=lambda t: sign * t.values[0])
    except (ValueError, RuntimeError, ZeroDivisionError):
        return None
    fig = go.Figure(go.Bar(x=list(imp.values()), y=list(imp), orientation="h"))
    fig.update_layout(**_LAYOUT, title="Parameter importance (PED-ANOVA, first objective)")
    return fig


def heatmap_figure(study: optuna.Study, s: StudySummary) -> go.Figure | None:
    """A sweep's objective over its grid: a heat map over two settings, a line over one."""
    params = s.plan.params
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    name = s.plan.objectives[0]
    if len(params) == 1:
        pts = sorted((t.params[params[0].path], t.values[0]) for t in done)
        fig = go.Figure(go.Scatter(x=[p[0] for p in pts], y=[p[1] for p in pts], mode="lines+markers"))
        fig.update_layout(**_LAYOUT, title=f"Sweep: {name} (in sample)", xaxis_title=params[0].path)
        return fig
    xs, ys = params[0].grid(), params[1].grid()
    z: list[list[float | None]] = [[None] * len(xs) for _ in ys]
    for t in done:
        z[ys.index(t.params[params[1].path])][xs.index(t.params[params[0].path])] = t.values[0]
    heat = go.Heatmap(x=[str(x) for x in xs], y=[str(y) for y in ys], z=z, colorbar={"title": name},
                      texttemplate="%{z:.2f}")  # fmt: skip
    fig = go.Figure(heat)
    fig.update_layout(**(_LAYOUT | {"height": 520}), title=f"Sweep: {name} (in sample)",
                      xaxis_title=params[0].path, yaxis_title=params[1].path)  # fmt: skip
    return fig
