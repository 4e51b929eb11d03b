"""The step every status-transition service starts with: lock the row, then check the move on it.

Each app's transition function (`run_transition`, `release_transition`, ...) calls this
inside its transaction, then sets its own timestamps and saves with `update_fields`.
Deciding on the locked, committed status, not on the caller's copy, is what keeps two
concurrent moves of the same row from both succeeding.
"""

from typing import TypeVar

from django.core.exceptions import ValidationError
from django.db import models

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
