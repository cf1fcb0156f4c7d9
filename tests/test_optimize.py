"""scalper optimize and sweep: trials as RQ jobs on a real Redis (tests/conftest.py), a study that survives a
SIGKILLed worker with every trial counted once, the same study for the same seed, and a report that puts
in-sample beside out-of-sample. The data is a week of the shared real BTC 1-minute bars."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from rq import Queue
from rq.registry import StartedJobRegistry

from optimize import params
from optimize.coordinator import QUEUE, Plan, storage
from optimize.page import render_page
from optimize.summary import summarize
from optimize.trial import Keys
from tests.conftest import RealRedis
from tests.datakit import BARS_1M

ROOT = Path(__file__).resolve().parents[1]
WEEK = [str(BARS_1M), "--symbol", "BTC-USDT-SWAP", "--from", "2022-01-03", "--to", "2022-01-10"]
DAYS = [str(BARS_1M), "--symbol", "BTC-USDT-SWAP", "--from", "2022-01-03", "--to", "2022-01-05"]
SEARCH = ["--param", "exits.take_profit_pct=0.3:1.5", "--param", "smart_exit.rsi_overbought=60:80"]


_started: list[subprocess.Popen[str]] = []


@pytest.fixture(autouse=True)
def _no_leftovers() -> Iterator[None]:
    """A test that fails mid-study leaves no optimize running (its workers stop with it)."""
    yield
    while _started:
        proc = _started.pop()
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=30)


def _scalper(*args: str, redis: RealRedis, cwd: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "REDIS_URL": f"unix://{redis.socket_path}"}
    env.pop("SCALPER_REDIS__URL", None)
    proc = subprocess.Popen([sys.executable, "-m", "scalper", *args], env=env, cwd=cwd, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    _started.append(proc)
    return proc


def _study(redis: RealRedis, name: str) -> optuna.Study:
    store = storage(f"unix://{redis.socket_path}", Keys("scalper", name))
    return optuna.load_study(study_name=name, storage=store)


# --- parameters: any setting, validated as the settings model validates it ---


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("exits.take_profit=0.3:1", "exits has no setting 'take_profit'"),
        ("exitz.take_profit_pct=0.3:1", "no setting section 'exitz'"),
        ("smart_exit.enabled=0:1", "a range needs a number setting"),
        ("exits.take_profit_pct=1:0.5", "need LOW < HIGH"),
        ("exits.max_harvests=0.5:3", "whole number"),
        ("exchange.api_key=a|b", "not a setting a backtest reads"),
        ("redis.url=a|b", "not a setting a backtest reads"),
        ("notify.urls=a|b", "not a setting a backtest reads"),
    ],
)
def test_a_bad_param_is_refused_naming_it(spec: str, says: str) -> None:
    with pytest.raises(params.ParamError, match=says):
        params.parse(spec)


def test_a_bound_the_settings_refuse_is_refused_before_any_trial() -> None:
    p = params.parse("smart_exit.rsi_overbought=60:120")
    with pytest.raises(params.ParamError, match=r"rsi_overbought=60:120: 120.0 is not a valid value"):
        params.check([p], {})


def test_kinds_follow_the_settings_model() -> None:
    assert params.parse("exits.max_harvests=0:3").kind == "int"
    assert params.parse("exits.take_profit_pct=0.3:1.5:0.3").grid() == [0.3, 0.6, 0.9, 1.2, 1.5]
    choice = params.parse("engine.entries=strategy|manual")
    assert choice.kind == "choice" and choice.choices == ("strategy", "manual")
    per_symbol = params.parse("symbols.BTC-USDT-SWAP.exits.take_profit_pct=0.3:1")
    expected = {"symbols": {"BTC-USDT-SWAP": {"exits": {"take_profit_pct": 0.5}}}}
    assert params.nested({per_symbol.path: 0.5}) == expected


def test_a_bad_param_on_the_command_line_is_one_line(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "scalper", "optimize", *WEEK, "--param", "exits.take_profit=0:1"]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=60,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [out.stderr.strip()]
    assert "--param exits.take_profit" in out.stderr and "take_profit_pct" in out.stderr


def test_a_window_too_short_to_warm_up_is_one_line_before_any_trial(tmp_path: Path) -> None:
    """Three hours: the out-of-sample 30 % is 54 bars, fewer than the 100 the indicators warm up on."""
    cmd = [sys.executable, "-m", "scalper", "optimize", str(BARS_1M), "--symbol", "BTC-USDT-SWAP", "--from",
           "2022-01-03T00:00", "--to", "2022-01-03T03:00", *SEARCH]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=60,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [out.stderr.strip()]
    assert "the out-of-sample window (0.3 of the data is kept out of sample)" in out.stderr
    assert "too short" in out.stderr
    assert not (tmp_path / "data").exists()  # refused before any Redis was started


# --- a study on real data, with workers on a real Redis ---


@pytest.mark.redis
def test_a_killed_worker_loses_no_trial_and_counts_none_twice(real_redis: RealRedis, tmp_path: Path) -> None:
    """Two local workers; once a few trials are told, the worker running a trial is SIGKILLed mid-trial. The
    study ends with its 20 trials, each once and complete, the killed one run again."""
    proc = _scalper("optimize", *WEEK, *SEARCH, "--trials", "20", "--workers", "2", "--name", "kill",
                    "--seed", "3", redis=real_redis, cwd=tmp_path)  # fmt: skip
    client = real_redis.client
    registry = StartedJobRegistry(QUEUE, connection=client)
    killed: tuple[int, str] | None = None
    deadline = time.monotonic() + 60
    while killed is None and time.monotonic() < deadline and proc.poll() is None:
        told = len(client.keys("scalper:optimize:kill:result:*"))
        for job_id in registry.get_job_ids() if told >= 4 else []:
            trial = int(job_id.split("-")[2])
            raw = client.hget(f"rq:job:{job_id}", "worker_name")
            if raw is None or not client.exists(f"scalper:optimize:kill:beat:{trial}"):
                continue
            pid = int(client.hget(f"rq:worker:{raw.decode()}", "pid") or 0)
            if pid and not client.exists(f"scalper:optimize:kill:result:{trial}"):
                os.kill(pid, signal.SIGKILL)
                killed = (trial, job_id)
                break
        time.sleep(0.01)
    _, err = proc.communicate(timeout=120)
    assert killed is not None, f"no trial was caught running: {err[-2000:]}"
    assert proc.returncode == 0, err[-3000:]
    study = _study(real_redis, "kill")
    numbers = [t.number for t in study.trials]
    assert numbers == list(range(20))
    assert {t.state for t in study.trials} == {TrialState.COMPLETE}, [t.state for t in study.trials]
    trial, _ = killed
    assert study.trials[trial].user_attrs["attempts"] == 2
    assert f"trial {trial}: its worker stopped mid-trial" in err
    assert [t.user_attrs["attempts"] for t in study.trials].count(2) == 1  # no other trial was run again
    assert len(client.keys("scalper:optimize:kill:result:*")) == 20  # one result per trial, none twice
    assert Queue(QUEUE, connection=client).count == 0


@pytest.mark.redis
def test_the_same_seed_gives_the_same_study_with_one_worker_or_two(
    real_redis: RealRedis, tmp_path: Path
) -> None:
    """Trials go out in batches (--batch), so what the sampler sees does not depend on which worker is
    quicker: the whole study, and so its best trial, is the same with one worker and with two."""
    runs = {}
    for name, workers in (("one", "1"), ("two", "2")):
        args = ["--trials", "14", "--workers", workers, "--name", name, "--seed", "7",
                "--out", str(tmp_path / name)]
        proc = _scalper("optimize", *WEEK, *SEARCH, *args, redis=real_redis, cwd=tmp_path)
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err[-3000:]
        study = _study(real_redis, name)
        runs[name] = (study, out)
    one, two = runs["one"][0], runs["two"][0]
    assert [(t.params, t.values) for t in one.trials] == [(t.params, t.values) for t in two.trials]
    assert one.best_trial.number == two.best_trial.number and one.best_trial.params == two.best_trial.params
    assert len({t.params["exits.take_profit_pct"] for t in one.trials}) == 14  # it did search
    # The best settings, ready to paste, are the best trial's, in the terminal and in best.env.
    line = f"SCALPER_EXITS__TAKE_PROFIT_PCT={one.best_trial.params['exits.take_profit_pct']}"
    assert line in runs["one"][1] and line in (tmp_path / "one" / "best.env").read_text().splitlines()
    page = (tmp_path / "one" / "study.html").read_text()
    assert "net_pnl in sample</th><th>net_pnl out of sample" in page
    assert "Optimisation history" in page and "Parameter importance" in page
    assert f"The best trial ({one.best_trial.number}) over the whole data" in page
    assert page.count("plotly.js v") <= 2  # plotly.js inlined once (its banner names the version twice)


@pytest.mark.redis
def test_resume_continues_a_study_to_its_new_size(real_redis: RealRedis, tmp_path: Path) -> None:
    args = [*WEEK, *SEARCH, "--trials", "6", "--name", "grow"]
    first = _scalper("optimize", *args, redis=real_redis, cwd=tmp_path)
    assert first.wait(120) == 0, first.communicate()[1][-2000:]
    again = _scalper("optimize", *args, redis=real_redis, cwd=tmp_path)
    assert again.wait(60) == 2 and "--resume grow" in again.communicate()[1]
    more = _scalper("optimize", "--resume", "grow", "--trials", "9", redis=real_redis, cwd=tmp_path)
    assert more.wait(120) == 0, more.communicate()[1][-2000:]
    study = _study(real_redis, "grow")
    assert [t.number for t in study.trials] == list(range(9))
    assert {t.state for t in study.trials} == {TrialState.COMPLETE}
    assert len({t.params["exits.take_profit_pct"] for t in study.trials}) == 9  # no draw repeated


@pytest.mark.redis
def test_a_killed_optimize_is_resumed_with_every_trial_once(real_redis: RealRedis, tmp_path: Path) -> None:
    """`optimize` SIGKILLed mid-batch (its workers stop with it): `--resume` adopts the trials it left
    running, takes what the workers wrote, runs the rest, and ends with each trial once."""
    args = [*WEEK, *SEARCH, "--trials", "12", "--workers", "2", "--name", "crash", "--seed", "5"]
    first = _scalper("optimize", *args, redis=real_redis, cwd=tmp_path)
    client = real_redis.client
    deadline = time.monotonic() + 60
    while len(client.keys("scalper:optimize:crash:result:*")) < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    first.kill()
    first.communicate(timeout=30)
    left = [t for t in _study(real_redis, "crash").trials if t.state == TrialState.RUNNING]
    assert left, "the kill left no trial running: nothing was tested"
    time.sleep(1)  # its workers stop with it (PR_SET_PDEATHSIG)
    more = _scalper("optimize", "--resume", "crash", "--trials", "12", "--workers", "2", redis=real_redis,
                    cwd=tmp_path)  # fmt: skip
    _, err = more.communicate(timeout=120)
    assert more.returncode == 0, err[-3000:]
    assert f"trial {left[0].number}: left running by an earlier optimize, adopted" in err
    study = _study(real_redis, "crash")
    assert [t.number for t in study.trials] == list(range(12))
    assert {t.state for t in study.trials} == {TrialState.COMPLETE}
    assert len(client.keys("scalper:optimize:crash:result:*")) == 12


@pytest.mark.redis
def test_one_optimize_at_a_time_writes_a_study(real_redis: RealRedis, tmp_path: Path) -> None:
    """A second `optimize --resume` of a study that is running is refused, after waiting out the lease a
    killed one would have left."""
    first = _scalper("optimize", *WEEK, *SEARCH, "--trials", "200", "--name", "busy", redis=real_redis,
                     cwd=tmp_path)  # fmt: skip
    deadline = time.monotonic() + 60
    while not real_redis.client.keys("scalper:optimize:busy:result:*") and time.monotonic() < deadline:
        time.sleep(0.05)
    second = _scalper("optimize", "--resume", "busy", redis=real_redis, cwd=tmp_path)
    _, err = second.communicate(timeout=60)
    assert second.returncode == 2
    assert err.strip() == ("scalper: the study 'busy' is being run by another `scalper optimize` on this "
                           "Redis: wait for it to end, or stop it first")  # fmt: skip
    assert first.poll() is None  # the first goes on


@pytest.mark.redis
def test_a_sweep_walks_the_grid_and_draws_a_heat_map(real_redis: RealRedis, tmp_path: Path) -> None:
    proc = _scalper("sweep", *WEEK, "--param", "exits.take_profit_pct=0.4:1.2:0.4", "--param",
                    "smart_exit.rsi_overbought=65|75", "--workers", "2", "--name", "grid", "--out",
                    str(tmp_path / "grid"), redis=real_redis, cwd=tmp_path)  # fmt: skip
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-3000:]
    study = _study(real_redis, "grid")
    seen = sorted((t.params["exits.take_profit_pct"], t.params["smart_exit.rsi_overbought"])
                  for t in study.trials)  # fmt: skip
    assert seen == [(tp, rsi) for tp in (0.4, 0.8, 1.2) for rsi in (65, 75)]
    page = (tmp_path / "grid" / "study.html").read_text()
    assert '"type":"heatmap"' in page and "Sweep: net_pnl" in page


@pytest.mark.redis
def test_a_combination_the_settings_refuse_is_a_failed_trial_with_its_reason(
    real_redis: RealRedis, tmp_path: Path
) -> None:
    """Each value alone is valid; rsi_mid 65 with rsi_overbought 60 is not: that trial is not run."""
    grid = ["--param", "smart_exit.rsi_mid=45|65", "--param", "smart_exit.rsi_overbought=60|80"]
    proc = _scalper("sweep", *WEEK, *grid, "--name", "clash", redis=real_redis, cwd=tmp_path)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-3000:]
    trials = _study(real_redis, "clash").trials
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert [t.params for t in failed] == [{"smart_exit.rsi_mid": 65, "smart_exit.rsi_overbought": 60}]
    assert "rsi_oversold < rsi_mid < rsi_overbought" in failed[0].user_attrs["error"]
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 3
    assert not real_redis.client.exists(f"scalper:optimize:clash:result:{failed[0].number}")  # never enqueued


def test_a_trial_payload_carries_no_secret() -> None:
    from config.settings import Settings
    from optimize.trial import resolved

    keys = {"api_key": "key-4f9a1c", "api_secret": "sec-77b2e0", "passphrase": "pp-93d1"}
    settings = Settings(exchange=keys, redis={"url": "redis://:pw-5e8c2a@db:6379/0"},
                        notify={"urls": ["tgram://tok-1b2c3d/42"]})  # fmt: skip
    text = json.dumps(resolved(settings))
    for secret in ("key-4f9a1c", "sec-77b2e0", "pp-93d1", "pw-5e8c2a", "tok-1b2c3d"):
        assert secret not in text
    assert json.loads(text)["exits"]["take_profit_pct"] == settings.exits.take_profit_pct


def test_every_setting_a_param_may_name_reaches_the_trial() -> None:
    """A section of the settings is either carried whole by a trial or refused as a --param: none is
    searched and then silently left out of the trial (a strategy's own section, once it lands, included)."""
    from config.settings import Settings
    from optimize.params import NOT_SENT
    from optimize.trial import resolved

    carried = resolved(Settings())
    for section, field in Settings.model_fields.items():
        if section in NOT_SENT:
            continue
        model = field.annotation
        if section == "symbols" or not hasattr(model, "model_fields"):
            assert section in carried
            continue
        for name in model.model_fields:
            try:
                params.parse(f"{section}.{name}=a|b")
            except params.ParamError:
                continue
            assert name in carried[section], f"{section}.{name} is searchable but not sent"


# --- a strategy written outside the package, searched by its own parameter ---

FIXTURE = ROOT / "tests" / "strategies" / "my_strategy.py"


def test_a_strategy_parameter_is_typed_and_checked_by_the_strategys_own_model() -> None:
    spec = f"{FIXTURE}:EveryNthCandle"
    assert params.parse("strategy.every=2:12", spec).kind == "int"  # EveryParams.every: int
    assert params.parse("strategy.side=long|short", spec).choices == ("long", "short")
    with pytest.raises(params.ParamError, match=r"EveryNthCandle has no parameter 'evry' \(its parameters: "
                                                r"every, side, hold_candles\)"):  # fmt: skip
        params.parse("strategy.evry=2:12", spec)
    with pytest.raises(params.ParamError, match="Input should be greater than or equal to 1"):
        params.check([params.parse("strategy.every=0:12", spec)], {"engine": {"strategy": spec}})


@pytest.mark.redis
def test_a_strategy_outside_the_package_is_swept_by_its_own_parameter_on_a_worker_elsewhere(
    real_redis: RealRedis, tmp_path: Path
) -> None:
    """The fixture strategy (one short entry every `every` candles, closed after 2) named by `--set
    engine.strategy` alone, as a file relative to where `sweep` runs; the only trial worker runs from another
    directory, where that relative path names nothing. Each trial trades by the fixture's rule with its own
    `every`: the trade count halves as `every` doubles, and equals the fixture's backtest of that window run
    here (the default strategy's differs)."""
    from config.settings import load_settings
    from optimize.coordinator import Plan
    from optimize.trial import Window, metrics

    elsewhere = tmp_path / "worker"
    elsewhere.mkdir()
    worker = _scalper("worker", "--trials", redis=real_redis, cwd=elsewhere)
    spec = f"{os.path.relpath(FIXTURE, tmp_path)}:EveryNthCandle"
    assert not (elsewhere / spec.split(":")[0]).exists()  # the worker could not find it by the relative path
    # No loss limit or loss-streak pause: every entry the strategy proposes is taken.
    sets = [f"engine.strategy={spec}", "risk.daily_loss_limit=1000000", "risk.loss_streak_limit=1000000"]
    proc = _scalper("sweep", *DAYS, *(a for s in sets for a in ("--set", s)), "--param",
                    "strategy.every=3|6|12", "--workers", "0", "--name", "plugin", redis=real_redis,
                    cwd=tmp_path)  # fmt: skip
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-3000:]
    assert worker.poll() is None  # the one worker ran every trial
    trials = {t.params["strategy.every"]: t for t in _study(real_redis, "plugin").trials}
    states = {t.state for t in trials.values()}
    assert states == {TrialState.COMPLETE}, [t.user_attrs.get("error") for t in trials.values()]
    trades = {every: t.user_attrs["in"]["trades"] for every, t in trials.items()}
    assert trades[3] > 500 and abs(trades[3] - 2 * trades[6]) <= 2 and abs(trades[6] - 2 * trades[12]) <= 2
    # Exactly the fixture's backtest of the trial's windows with that `every`, run in this process.
    plan = Plan.from_json(real_redis.client.get("scalper:optimize:plugin:meta").decode())
    overrides = {"engine": {"strategy": f"{FIXTURE}:EveryNthCandle"},
                 "risk": {"daily_loss_limit": 1000000, "loss_streak_limit": 1000000}}  # fmt: skip
    for every, t in trials.items():
        mine = load_settings(**overrides, strategy={"every": every})
        for key, window in (("in", plan.in_sample), ("out", plan.out_of_sample)):
            expected = metrics(mine, plan.data, plan.symbol, Window(*window))  # type: ignore[misc]
            assert (t.user_attrs[key]["trades"], t.user_attrs[key]["net_pnl"]) == (
                expected["trades"], pytest.approx(expected["net_pnl"]))  # fmt: skip
    default = metrics(load_settings(risk=overrides["risk"]), plan.data, plan.symbol, Window(*plan.in_sample))
    assert default["trades"] not in trades.values()


@pytest.mark.redis
def test_a_combination_the_strategys_model_refuses_is_a_failed_trial_never_enqueued(
    real_redis: RealRedis, tmp_path: Path
) -> None:
    """The shipped reversion example wants oversold < exit_rsi < overbought: oversold 45 with exit_rsi 40 is
    refused by its own Params model when the trial is asked, as the settings model refuses a clash."""
    grid = ["--set", "engine.strategy=statemachines.reversion:RsiReversionStrategy",
            "--param", "strategy.oversold=30|45", "--param", "strategy.exit_rsi=40|50"]  # fmt: skip
    proc = _scalper("sweep", *DAYS, *grid, "--name", "rsiclash", redis=real_redis, cwd=tmp_path)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-3000:]
    trials = _study(real_redis, "rsiclash").trials
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert [t.params for t in failed] == [{"strategy.oversold": 45, "strategy.exit_rsi": 40}]
    assert "strategy: need oversold < exit_rsi < overbought" in failed[0].user_attrs["error"]
    assert not real_redis.client.exists(f"scalper:optimize:rsiclash:result:{failed[0].number}")
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(done) == 3 and len({t.user_attrs["in"]["trades"] for t in done}) > 1  # the parameters matter


# --- the report: in sample beside out of sample, and where they disagree ---


def _plan() -> Plan:
    return Plan(name="r", params=[params.parse("exits.take_profit_pct=0.3:1.5")], objectives=["net_pnl"],
                trials=3, seed=0, batch=1, base={}, sets=[], data=["x.csv"], symbol=None,
                in_sample=(None, 1000.0 * 86400), out_of_sample=(1000.0 * 86400, None))  # fmt: skip


def _metrics(net: float, days: float, start: float) -> dict[str, float]:
    return {"net_pnl": net, "sharpe": 1.0, "max_drawdown": 2.0, "trades": 10, "start": start,
            "end": start + days * 86400}  # fmt: skip


def test_the_report_shows_in_and_out_of_sample_side_by_side_and_flags_a_disagreement() -> None:
    study = optuna.create_study(direction="maximize")
    # trial 0: +70 over 7 days in sample (10/day), a loss out of sample: flagged
    # trial 1: +35 over 7 days in sample (5/day), +12 over 3 days out of sample (4/day): holds
    for tp, ins, outs in ((0.5, 70.0, -9.0), (0.9, 35.0, 12.0)):
        t = study.ask({"exits.take_profit_pct": optuna.distributions.FloatDistribution(0.3, 1.5)})
        t.set_user_attr("in", _metrics(ins, 7, 0))
        t.set_user_attr("out", _metrics(outs, 3, 7 * 86400))
        study.tell(t, ins)
        del tp
    summary = summarize(study, _plan())
    assert [r.trial.number for r in summary.rows] == [0, 1]
    assert summary.rows[0].warnings == ["net_pnl 10.00 a day in sample, -3.00 a day out of sample: a loss"]
    assert summary.rows[1].warnings == []
    page = render_page(study, summary, None)
    best_table = page[page.index("Best trials: in sample | out of sample") :]
    first_row = best_table[best_table.index("<tr><td>0</td>") :].split("</tr>")[0]
    assert "<td>70.00</td><td>-9.00</td>" in first_row  # net_pnl in sample, then out of sample
    assert 'class="disagree">net_pnl 10.00 a day in sample, -3.00 a day out of sample: a loss' in first_row
    second_row = best_table[best_table.index("<tr><td>1</td>") :].split("</tr>")[0]
    assert "<td>35.00</td><td>12.00</td>" in second_row and ">consistent<" in second_row


def test_the_rank_correlation_sees_ties_as_ties() -> None:
    from optimize.verdict import rank_correlation

    assert rank_correlation([(1.0, 5.0), (1.0, 5.0), (1.0, 5.0)]) is None  # all equal: no ranking at all
    assert rank_correlation([(1.0, 1.0), (2.0, 2.0), (3.0, 3.0)]) == pytest.approx(1.0)
    assert rank_correlation([(1.0, 3.0), (2.0, 2.0), (3.0, 1.0)]) == pytest.approx(-1.0)
    assert rank_correlation([(1.0, 7.0), (1.0, 9.0), (2.0, 8.0), (2.0, 8.0)]) == pytest.approx(0.0)
