"""The one job mechanism: how a row becomes work on a worker without ever being lost or done twice.

Every job's state lives in its row (a version `pending`, a run `queued`, a delivery
`received`, ...); the message only says "look at row N". A `Job` names, for one
model, which rows wait for a message, which an attempt holds, and the fields that
keep the books (attempt number, heartbeat, when it was sent). On that description,
written once here:

- `job_send`: stamp the row and send its task by name after commit. A broker that
  is down is logged, never an error for the request that made the job.
- `job_claim`: take a waiting row (or a dead attempt's) under its row lock, through
  the app's guarded transition, which counts the attempt; a duplicate message finds
  nothing to claim.
- `Heartbeat` / `job_lock`: every later write of the attempt is fenced by its
  number. An attempt that was taken over raises `ClaimLost` and records nothing.
- `job_sweep`: the beat sweeper. It sends again a row whose message was lost
  (waiting past JOB_REQUEUE_SECONDS) and hands an attempt that stopped beating to
  the app's `on_stale` (queue it again, or fail it when its attempts are spent).
- `job_retry`: a maintainer's retry of a failed row, queued again.

The database may restart under a long job: `db_reconnect` and `db_retry` keep a
worker's writes going across it.
"""

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Generic, TypeVar

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import DatabaseError, InterfaceError, OperationalError, connection, models, transaction
from django.db.models import Q
from django.utils import timezone
from kombu.exceptions import KombuError
from kombu.exceptions import OperationalError as BrokerError

from cotrain_site import celery_app

log = logging.getLogger(__name__)
# What publishing raises when the broker cannot be reached (redis-py's errors come
# wrapped in kombu's OperationalError; a filesystem broker's full or unwritable disk is an OSError).
SEND_ERRORS = (BrokerError, KombuError, ConnectionError, OSError, TimeoutError)
# What a database restart raises on a connection it broke (and while it is still down).
DB_DOWN = (OperationalError, InterfaceError)
M = TypeVar("M", bound=models.Model)
T = TypeVar("T")
NOTHING = Q(pk__in=[])


class ClaimLost(Exception):
    """Another attempt owns the job now; this worker must stop and record nothing."""


def _pk_only(row: models.Model) -> tuple[object, ...]:
    return (row.pk,)


@dataclass(frozen=True)
class Job(Generic[M]):
    """One model's rows as jobs. The Q objects are conditions on the row; the strings are field names."""

    model: type[M]
    task: str
    # Rows waiting for their message: the sweeper sends again those waiting past JOB_REQUEUE_SECONDS.
    waiting: Q
    # Rows an attempt holds: its writes are fenced to these (and to its attempt number).
    working: Q
    # Settings name of the seconds without a heartbeat after which an attempt is presumed dead.
    timeout_setting: str
    attempt_field: str = "attempt"
    beat_field: str = "heartbeat_at"
    sent_field: str = "enqueued_at"
    # A message may take over an attempt that stopped beating (instead of waiting for the sweeper).
    claim_stale: bool = False
    # Rows a message may claim besides the waiting ones (a failed build that its task's autoretry builds again).
    also_claimable: Q = NOTHING
    # The task's arguments for a row (by default its pk).
    args: Callable[[M], tuple[object, ...]] = field(default=_pk_only)

    def timeout(self) -> timedelta:
        return timedelta(seconds=getattr(settings, self.timeout_setting))

    def stale(self) -> Q:
        """Rows whose attempt has not beaten for the timeout (or never did)."""
        limit = timezone.now() - self.timeout()
        return Q(**{f"{self.beat_field}__isnull": True}) | Q(**{f"{self.beat_field}__lt": limit})

    def lost(self) -> Q:
        """Waiting rows whose message should have been taken long ago."""
        limit = timezone.now() - timedelta(seconds=settings.JOB_REQUEUE_SECONDS)
        return self.waiting & Q(**{f"{self.sent_field}__lt": limit})

    def claimed(self, row: M) -> dict[str, Any]:
        """The fields a claim writes (for the app's transition into the working status): the next attempt
        number, which fences every later write of it, and its first heartbeat."""
        return {self.attempt_field: getattr(row, self.attempt_field) + 1, self.beat_field: timezone.now()}

    def claim_in_place(self, row: M) -> M:
        """A claim that moves no status (a release stays `publishing`): it writes only `claimed(row)`."""
        claimed = self.claimed(row)
        for name, value in claimed.items():
            setattr(row, name, value)
        row.save(update_fields=list(claimed))
        return row

    def claimable(self) -> Q:
        claimable = self.waiting | self.also_claimable
        return claimable | (self.working & self.stale()) if self.claim_stale else claimable


def enqueue(task_name: str, *args: object) -> bool:
    """Send `task_name(*args)` now; False (logged) when the broker is unreachable.

    By name, so that services need not import their app's tasks module (which imports
    them); the routes in worker/celery_app.py apply to names.
    """
    try:
        celery_app.send_task(task_name, args=list(args))
    except SEND_ERRORS as exc:
        log.warning("could not enqueue %s%r (%s); the sweeper will enqueue it again", task_name, args, exc)
        return False
    return True


def enqueue_on_commit(task_name: str, *args: object) -> None:
    """Send `task_name(*args)` once the current transaction commits; a broker error never reaches the caller."""
    transaction.on_commit(lambda: enqueue(task_name, *args))


def job_send(job: Job[M], row: M) -> None:
    """Stamp `row` as sent now and send its task after commit (the sweeper waits JOB_REQUEUE_SECONDS from here)."""
    setattr(row, job.sent_field, timezone.now())
    row.save(update_fields=[job.sent_field])
    enqueue_on_commit(job.task, *job.args(row))


def job_claim(job: Job[M], *, pk: int, claim: Callable[[M], M]) -> M | None:
    """`claim(row)` on the row `pk` under its lock if a message may take it now; None: nothing to do.

    `claim` is the app's guarded transition into the working status, which counts
    the attempt; a second message for the same row finds it working and beating.
    """
    with transaction.atomic():
        row = job.model.objects.select_for_update().filter(job.claimable(), pk=pk).first()
        return None if row is None else claim(row)


def job_lock(job: Job[M], *, pk: int, attempt: int) -> M:
    """The row under its lock, if `attempt` still holds it; else `ClaimLost`. Call inside a transaction."""
    locked = job.model.objects.select_for_update().filter(job.working, pk=pk, **{job.attempt_field: attempt}).first()
    if locked is None:
        raise ClaimLost(f"{job.model._meta.verbose_name} {pk}: attempt {attempt} was taken over")
    return locked


class Heartbeat(Generic[M]):
    """A claimed attempt's sign of life, at most every `every_s` seconds, fenced by its attempt number.

    Raises `ClaimLost` once the row left the working status or another attempt took
    it. A database that is briefly down skips a beat (reconnecting) instead of
    stopping the work: the timeout has slack for it.
    """

    def __init__(self, job: Job[M], *, pk: int, attempt: int, every_s: float = 0.0) -> None:
        self.job, self.pk, self.attempt, self.every_s = job, pk, attempt, every_s
        self.last = float("-inf")

    def due(self) -> bool:
        return time.monotonic() - self.last >= self.every_s

    def __call__(self, force: bool = False, **fields: Any) -> None:
        """Beat now if due (or `force`), writing `fields` with it."""
        if not (force or self.due()):
            return
        job, name = self.job, f"{self.job.model._meta.verbose_name} {self.pk}"
        mine = job.model.objects.filter(job.working, pk=self.pk, **{job.attempt_field: self.attempt})
        try:
            alive = mine.update(**{job.beat_field: timezone.now()}, **fields)
        except DatabaseError as exc:
            db_reconnect(what=f"{name} heartbeat", exc=exc)
            return
        self.last = time.monotonic()
        if not alive:
            raise ClaimLost(f"{name}: attempt {self.attempt} was taken over")


def _ids(job: Job[Any], condition: Q) -> list[int]:
    return list(job.model.objects.filter(condition).order_by("pk").values_list("pk", flat=True))


def job_ids_stale(job: Job[Any]) -> list[int]:
    """Rows held by an attempt that stopped beating (its worker died)."""
    return _ids(job, job.working & job.stale())


def job_ids_lost(job: Job[Any]) -> list[int]:
    """Rows waiting past JOB_REQUEUE_SECONDS for a message that was lost."""
    return _ids(job, job.lost())


def job_resend_lost(job: Job[M], *, pk: int) -> bool:
    """Send again a row still waiting past JOB_REQUEUE_SECONDS (its message was lost); True when sent.

    A duplicate is harmless: the claim lets one message through.
    """
    with transaction.atomic():
        row = job.model.objects.select_for_update().filter(job.lost(), pk=pk).first()
        if row is None:
            return False
        job_send(job, row)
    return True


def job_sweep(job: Job[M], *, on_stale: Callable[[M], T], on_lost: Callable[[M], T] | None = None
              ) -> tuple[list[T], list[Any]]:
    """The beat sweeper's pass over one kind: what `on_stale` returned for each dead attempt, and for each
    row whose message was lost what `on_lost` returned (by default it is sent again: True).

    Both run under the row lock, on a row that still qualifies.
    """
    def each(ids: list[int], condition: Callable[[], Q], handle: Callable[[M], Any]) -> list[Any]:
        outcomes = []
        for pk in ids:
            with transaction.atomic():
                row = job.model.objects.select_for_update().filter(condition(), pk=pk).first()
                if row is not None:
                    outcomes.append(handle(row))
        return outcomes

    stale = each(job_ids_stale(job), lambda: job.working & job.stale(), on_stale)
    if on_lost is None:
        return stale, [job_resend_lost(job, pk=pk) for pk in job_ids_lost(job)]
    return stale, each(job_ids_lost(job), job.lost, on_lost)


def job_retry(job: Job[M], row: M, *, failed: str, requeue: Callable[[M, str], M], label: str, noun: str) -> M:
    """A maintainer's retry of a failed row: `requeue(locked, last_error)` puts it back, then it is sent.

    `label` names the row in the refusal ("Run 7"), `noun` the job ("run", "build").
    """
    with transaction.atomic():
        locked: Any = job.model.objects.select_for_update().get(pk=row.pk)
        if locked.status != failed:
            raise ValidationError(f"{label} is {locked.get_status_display()}; only a failed {noun} can be retried.",
                                  code="not_failed")
        retried = requeue(locked, keep_newest(locked.error, 4000))
        job_send(job, retried)
    return retried


def keep_newest(text: str, limit: int) -> str:
    """The last `limit` characters of a growing log of reasons: the newest failure is the one that matters."""
    return text if len(text) <= limit else "…" + text[-(limit - 1):]


def db_reconnect(*, what: str, exc: Exception) -> None:
    """Drop a connection the database server broke, so that the next query opens a fresh one.

    Django only closes broken connections between requests (or tasks); inside one
    long task, every later query would fail on the dead socket.
    """
    log.warning("%s: the database is unreachable (%s); reconnecting at the next write", what, exc)
    with contextlib.suppress(DatabaseError):
        connection.close()


def db_retry(write: Callable[[], T], *, what: str, seconds: float | None = None) -> T:
    """`write()`, tried again (reconnecting) while the database is down, for up to the heartbeat timeout.

    For the writes that end an attempt: giving up there would leave a finished
    job working until the sweeper ran it again.
    """
    deadline = time.monotonic() + (settings.RUN_HEARTBEAT_TIMEOUT_SECONDS if seconds is None else seconds)
    while True:
        try:
            return write()
        except DB_DOWN as exc:
            if time.monotonic() >= deadline:
                raise
            db_reconnect(what=what, exc=exc)
            time.sleep(1.0)
