"""Handing work to Celery without ever losing it or failing the request that made it.

Every job's state lives in its row (a version `pending`, a run `queued`, a delivery
`received`, ...); the message only says "look at row N". So a message that could not
be sent (broker down) or that the broker lost (a Redis restart, a SIGKILLed worker on
the filesystem broker) costs a delay, never the job: each app's sweeper finds rows
that waited too long and enqueues them again, and every task claims its row with a
guarded transition, so a duplicate message does nothing.
"""

import logging

from django.db import transaction
from kombu.exceptions import KombuError
from kombu.exceptions import OperationalError as BrokerError

from cotrain_site import celery_app

log = logging.getLogger(__name__)
# What publishing raises when the broker cannot be reached (redis-py's errors come
# wrapped in kombu's OperationalError; a filesystem broker's full or unwritable disk is an OSError).
SEND_ERRORS = (BrokerError, KombuError, ConnectionError, OSError, TimeoutError)


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
