"""Writes to training runs and evaluations; the only place their statuses change.

`training.services` re-exports the functions of its modules: transitions (the one
write path of each status), runs (start, cancel, retry, and the worker's side of a run)
and evaluations (scoring, verdict, override, retry).
"""

from training.services.evaluations import (
    evaluation_claim,
    evaluation_execute,
    evaluation_fail,
    evaluation_on_stale,
    evaluation_override,
    evaluation_record,
    evaluation_retry,
    evaluation_verdict,
)
from training.services.runs import (
    ClaimLost,
    base_checkpoint_validate,
    run_cancel,
    run_claim,
    run_execute,
    run_finish,
    run_folder_write,
    run_on_stale,
    run_record_outcome,
    run_retry,
    run_start,
)
from training.services.transitions import (
    EVALUATION_JOB,
    EVALUATION_TRANSITIONS,
    RUN_JOB,
    RUN_TRANSITIONS,
    evaluation_transition,
    run_transition,
)

__all__ = [
    "EVALUATION_JOB",
    "EVALUATION_TRANSITIONS",
    "RUN_JOB",
    "RUN_TRANSITIONS",
    "ClaimLost",
    "base_checkpoint_validate",
    "evaluation_claim",
    "evaluation_execute",
    "evaluation_fail",
    "evaluation_on_stale",
    "evaluation_override",
    "evaluation_record",
    "evaluation_retry",
    "evaluation_transition",
    "evaluation_verdict",
    "run_cancel",
    "run_claim",
    "run_execute",
    "run_finish",
    "run_folder_write",
    "run_on_stale",
    "run_record_outcome",
    "run_retry",
    "run_start",
    "run_transition",
]
