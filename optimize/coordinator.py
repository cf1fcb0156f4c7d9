"""The study's one writer: it asks Optuna for settings, enqueues each trial as an RQ job, and tells the
study each result, once.

Trials go out in batches of `batch`: the next batch is asked only when the last is told. So what the sampler
sees at each ask does not depend on which worker finished first: with a seed, the study (every trial's
settings and values) is the same whatever the number of workers, for the same batch size.

Nothing is lost to a killed process:
- a worker killed mid-trial stops refreshing the trial's heartbeat key; once that has been gone for
  BEAT_TTL_S the trial is enqueued again (attempt 2, 3), up to MAX_ATTEMPTS, then told as failed;
- a trial runs twice at most by mistake (a worker that was slow, not dead): its result key is written once
  (SET NX), and the study is told with `skip_if_finished`, so it counts once;
- a killed `optimize` leaves its trials RUNNING in the journal: `--resume NAME` adopts each, takes its
  result if a worker wrote one meanwhile, and otherwise enqueues it again with the same settings.

The study is Optuna's JournalStorage over Redis (JournalRedisBackend, marked experimental by Optuna since
3.1; its warning is silenced here): an append-only log of the study's events under the study's prefix.
"""

from __future__ import annotations

import itertools
import json
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import optuna
import redis
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalRedisBackend
from optuna.trial import FrozenTrial, TrialState
from redis.exceptions import LockError
from redis.lock import Lock
from rq import Queue
from rq.job import Job, JobStatus

from config.settings import ConfigError, load_settings
from optimize import objectives
from optimize.params import Param, merged, nested
from optimize.trial import BEAT_TTL_S, Keys, finite, resolved, run_trial
from workers.strategies import check_strategy

QUEUE = "optimize"
LEASE_S = 10  # the study's lease (own_study), renewed every second
MAX_ATTEMPTS = 3  # a trial whose worker died this many times is told as failed
POLL_S = 0.1


@dataclass
class Plan:
    """What a study is: stored in Redis with it, so that `--resume NAME` needs only the name."""

    name: str
    params: list[Param]
    objectives: list[str]
    trials: int
    seed: int
    batch: int
    base: dict[str, Any]  # the --set settings, nested
    sets: list[str]  # the same as typed, for the report
    data: list[str]
    symbol: str | None
    in_sample: tuple[float | None, float | None]
    out_of_sample: tuple[float, float | None] | None
    grid: bool = False  # a sweep: every combination of the params' values
    prefix: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Plan:
        d = json.loads(text)
        d["params"] = [Param(**{**p, "choices": tuple(p["choices"])}) for p in d["params"]]
        d["in_sample"] = tuple(d["in_sample"])
        d["out_of_sample"] = tuple(d["out_of_sample"]) if d["out_of_sample"] else None
        return cls(**d)


class StudyError(ValueError):
    """A study that cannot start: one line (it exists already, or there is none to resume)."""


def storage(url: str, keys: Keys) -> JournalStorage:
    with warnings.catch_warnings():  # "experimental" since Optuna 3.1: said once here, in the module doc
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return JournalStorage(JournalRedisBackend(url, prefix=keys.journal()))


def sampler(plan: Plan, told: int) -> optuna.samplers.BaseSampler:
    """Seeded; a resumed study's sampler is seeded past the trials it has, so it does not draw them again.
    (A sweep's trials are all enqueued up front: the sampler draws nothing there.)"""
    return optuna.samplers.TPESampler(seed=plan.seed + told)


def own_study(client: redis.Redis, prefix: str, name: str) -> Lock:
    """The study's lease: one `optimize` writes a study at a time (two would both ask and adopt). A killed
    one's lease lapses within LEASE_S, so `--resume` right after a kill waits for it instead of failing."""
    lock = client.lock(Keys(prefix, name).owner(), timeout=LEASE_S, blocking_timeout=LEASE_S + 1,
                       thread_local=False)  # fmt: skip
    if not lock.acquire():
        raise StudyError(f"the study {name!r} is being run by another `scalper optimize` on this Redis: "
                         "wait for it to end, or stop it first")  # fmt: skip
    return lock


def open_study(plan: Plan, client: redis.Redis, url: str, *, resume: bool) -> optuna.Study:
    keys = Keys(plan.prefix, plan.name)
    if not resume and client.exists(keys.meta()):
        raise StudyError(f"a study named {plan.name!r} exists already: --resume {plan.name} continues it, "
                         "or give another --name")  # fmt: skip
    client.set(keys.meta(), plan.to_json())
    store = storage(url, keys)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    told = 0
    if resume:
        told = len(optuna.load_study(study_name=plan.name, storage=store).trials)
    study = optuna.create_study(study_name=plan.name, storage=store, sampler=sampler(plan, told),
                                directions=objectives.directions(plan.objectives), load_if_exists=resume)
    if plan.grid and not resume:  # every combination, in grid order (Optuna's GridSampler wants optimize())
        paths = [p.path for p in plan.params]
        for combo in itertools.product(*(p.grid() for p in plan.params)):
            study.enqueue_trial(dict(zip(paths, combo, strict=True)))
    return study


def load_plan(client: redis.Redis, prefix: str, name: str) -> Plan:
    text = client.get(Keys(prefix, name).meta())
    if text is None:
        raise StudyError(f"no study named {name!r} in this Redis to resume")
    return Plan.from_json(text.decode() if isinstance(text, bytes) else text)


@dataclass
class _Pending:
    trial: int
    attempt: int
    job_id: str
    # Since when (this process's monotonic clock) the trial has been neither queued nor heartbeating: the
    # coordinator's own observation, so no two machines' clocks are compared.
    silent_since: float | None = None


@dataclass
class Coordinator:
    plan: Plan
    study: optuna.Study
    client: redis.Redis
    say: Callable[[str], None] = print
    pending: dict[int, _Pending] = field(default_factory=dict)
    payloads: dict[int, dict[str, Any]] = field(default_factory=dict)
    tick: Callable[[], None] = lambda: None  # called each poll (the CLI restarts dead local workers)
    lock: Lock | None = None  # the study's lease, renewed while it runs (own_study)

    @property
    def keys(self) -> Keys:
        return Keys(self.plan.prefix, self.plan.name)

    def run(self) -> optuna.Study:
        self._adopt()
        self._wait()
        while (started := self._started()) < self.plan.trials:
            for _ in range(min(self.plan.batch, self.plan.trials - started)):
                self._renew()
                self._ask()
            self._wait()
        return self.study

    def _renew(self) -> None:
        if self.lock is None:
            return
        try:
            self.lock.reacquire()
        except LockError:
            raise StudyError(f"lost the study {self.plan.name!r}'s lease (this process stalled over "
                             f"{LEASE_S} s and another optimize took it): stopping") from None

    def _started(self) -> int:
        """Trials asked so far (a sweep's enqueued grid points wait until asked)."""
        return sum(1 for t in self.study.get_trials(deepcopy=False) if t.state != TrialState.WAITING)

    # --- asking and enqueueing ---

    def _ask(self) -> None:
        trial = self.study.ask()
        values = {p.path: _suggest(trial, p) for p in self.plan.params}
        try:
            settings = load_settings(**merged(self.plan.base, nested(values)))
            check_strategy(settings)  # the strategy's own model may refuse a combination too
        except ConfigError as err:  # a combination the settings refuse (rsi_mid above rsi_overbought)
            reason = " ".join(str(err).split())
            trial.set_user_attr("error", f"invalid settings: {reason}")
            self.study.tell(trial, state=TrialState.FAIL)
            self.say(f"trial {trial.number}: invalid settings, not run: {reason}")
            return
        self.payloads[trial.number] = self._payload(trial.number, resolved(settings))
        self._enqueue(trial.number, 1)

    def _payload(self, n: int, settings: dict[str, Any]) -> dict[str, Any]:
        p = self.plan
        return {"prefix": p.prefix, "study": p.name, "trial": n, "settings": settings, "data": p.data,
                "symbol": p.symbol, "in_sample": list(p.in_sample),
                "out_of_sample": list(p.out_of_sample) if p.out_of_sample else None}  # fmt: skip

    def _enqueue(self, n: int, attempt: int) -> None:
        self.study._storage.set_trial_user_attr(self._trial_id(n), "attempts", attempt)
        job_id = f"optimize-{self.plan.name}-{n}-{attempt}"
        Queue(QUEUE, connection=self.client).enqueue(
            run_trial, {**self.payloads[n], "attempt": attempt}, job_id=job_id, job_timeout=24 * 3600,
            result_ttl=600, failure_ttl=24 * 3600,
        )  # fmt: skip
        self.pending[n] = _Pending(n, attempt, job_id)

    def _trial_id(self, n: int) -> int:
        return self.study._storage.get_trial_id_from_study_id_trial_number(self.study._study_id, n)

    def _adopt(self) -> None:
        """A resumed study's RUNNING trials: their result if written, else enqueued again."""
        for t in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            values = dict(t.params)
            settings = load_settings(**merged(self.plan.base, nested(values)))
            self.payloads[t.number] = self._payload(t.number, resolved(settings))
            attempt = int(t.user_attrs.get("attempts", 0))
            if attempt == 0:  # asked, never enqueued
                self._enqueue(t.number, 1)
            else:  # its job may still be queued or running: _check_alive enqueues it again if not
                job_id = f"optimize-{self.plan.name}-{t.number}-{attempt}"
                self.pending[t.number] = _Pending(t.number, attempt, job_id)
            self.say(f"trial {t.number}: left running by an earlier optimize, adopted")

    # --- waiting and telling ---

    def _wait(self) -> None:
        last_check = 0.0
        while self.pending:
            self.tick()
            numbers = sorted(self.pending)
            results = self.client.mget([self.keys.result(n) for n in numbers])
            for n, raw in zip(numbers, results, strict=True):
                if raw is not None:
                    self._tell(n, json.loads(raw))
            if time.monotonic() - last_check > 1.0:
                last_check = time.monotonic()
                self._renew()
                for n in sorted(self.pending):
                    self._check_alive(self.pending[n])
            time.sleep(POLL_S)

    def _tell(self, n: int, result: dict[str, Any]) -> None:
        del self.pending[n]
        trial_id = self._trial_id(n)
        store = self.study._storage
        for key in ("in", "out", "seconds", "worker", "error"):
            if result.get(key) is not None:
                store.set_trial_user_attr(trial_id, key, result[key])
        if not result.get("ok"):
            self.study.tell(n, state=TrialState.FAIL, skip_if_finished=True)
            self.say(f"trial {n}: failed: {result.get('error')}")
            return
        values = [finite(result["in"][o]) for o in self.plan.objectives]
        self.study.tell(n, values, skip_if_finished=True)
        self.say(progress_line(store.get_trial(trial_id), self.plan))  # one trial, not a copy of them all

    def _check_alive(self, p: _Pending) -> None:
        """A trial whose worker died: enqueued again. Queued and still waiting for a worker: left alone. Dead
        means: neither queued nor heartbeating, nor a result, for BEAT_TTL_S in a row (a job just taken has
        not written its first heartbeat yet; a job gone with a killed `optimize` is gone)."""
        if self.client.exists(self.keys.beat(p.trial)):
            p.silent_since = None
            return
        exists = self.client.exists(f"rq:job:{p.job_id}")
        job = Job.fetch(p.job_id, connection=self.client) if exists else None
        status = job.get_status(refresh=False) if job is not None else None
        if status in (JobStatus.QUEUED, JobStatus.DEFERRED, JobStatus.SCHEDULED):
            p.silent_since = None
            return
        now = time.monotonic()
        if p.silent_since is None or now - p.silent_since < BEAT_TTL_S:
            p.silent_since = p.silent_since or now
            return
        if self.client.exists(self.keys.result(p.trial)):
            return  # it finished between the two reads: told at the next poll
        if p.attempt >= MAX_ATTEMPTS:
            self._tell(p.trial, {"ok": False, "error": f"its worker died {p.attempt} times"})
            return
        self.say(f"trial {p.trial}: its worker stopped mid-trial (job {status or 'gone'}); enqueued again")
        self._enqueue(p.trial, p.attempt + 1)


def _suggest(trial: optuna.Trial, p: Param) -> Any:
    if p.kind == "choice":
        return trial.suggest_categorical(p.path, list(p.choices))
    if p.kind == "int":
        return trial.suggest_int(p.path, int(p.low), int(p.high), step=int(p.step or 1))
    return trial.suggest_float(p.path, p.low, p.high, step=p.step)


def progress_line(t: FrozenTrial, plan: Plan) -> str:
    ins, outs = t.user_attrs.get("in") or {}, t.user_attrs.get("out") or {}
    figures = ", ".join(
        f"{o} {_fmt(ins.get(o))}" + (f" (out of sample {_fmt(outs.get(o))})" if outs else "")
        for o in plan.objectives
    )
    return f"trial {t.number}: {figures} in {t.user_attrs.get('seconds', 0):.2f} s"


def _fmt(x: float | None) -> str:
    return "–" if x is None else f"{x:,.2f}"
