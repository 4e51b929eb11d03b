"""The one way a status changes: lock the row, check the move on it, write it with `update_fields`.

Each app's transition function (`run_transition`, `release_transition`, ...) calls
`transition` with its table of allowed moves and what else the move writes (its
timestamps, an attempt number). Deciding on the locked, committed status, not on the
caller's copy, is what keeps two concurrent moves of the same row from both succeeding.
"""

from collections.abc import Callable
from typing import Any, TypeVar

from django.core.exceptions import ValidationError
from django.db import models, transaction

M = TypeVar("M", bound=models.Model)


def lock_for_transition(model: type[M], *, pk: int, to_status: str, allowed: set[tuple[str, str]],
                        label: str) -> M:
    """The row `pk` of `model`, locked (select_for_update), if its status may become `to_status`.

    `label` names the row in the error, with `{row}` for it: "Batch {row.name}".
    """
    locked = model.objects.select_for_update().get(pk=pk)
    if (locked.status, to_status) not in allowed:
        raise ValidationError(f"{label.format(row=locked)} is {locked.status}; it cannot become {to_status}.")
    return locked


def transition(model: type[M], *, pk: int, to_status: str, allowed: set[tuple[str, str]], label: str,
               changes: Callable[[M], dict[str, Any]] | None = None) -> M:
    """Move the row `pk` to `to_status` if `allowed` has the move from its locked status; returns it.

    `changes(locked)` gives the other fields the move writes, read off the locked row
    (an attempt number counts up from the committed one, not from the caller's copy).
    """
    with transaction.atomic():
        locked = lock_for_transition(model, pk=pk, to_status=to_status, allowed=allowed, label=label)
        values = changes(locked) if changes is not None else {}
        locked.status = to_status  # type: ignore[attr-defined]  # every model with a status machine has one
        for name, value in values.items():
            setattr(locked, name, value)
        locked.save(update_fields=["status", *values])
        return locked
