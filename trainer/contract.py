"""The run folder contract between the worker and the trainer: every file name that crosses, and the exit codes.

docs/ARCHITECTURE.md ("Run folder contract") says who writes each file, when, and
what is in it. Both sides take the names from here and from nowhere else. This
module imports nothing but the standard library, and `trainer/__init__.py` loads
its torch modules only when they are asked for, so the worker and the platform
import `trainer.contract` (and only it) without loading torch.

Inputs and outputs never share a name: the platform writes the inputs before
every launch and the trainer only reads them; the trainer writes the outputs.
"""

from __future__ import annotations

import enum

# -- inputs: written by the platform (training.services.runs) before each launch ---------

#: The run config the trainer is launched with (`train --config`), with absolute paths.
RUN_CONFIG = "run.yaml"
#: The platform's record of the run (ids, attempt, dataset hash, base, recipe); the trainer never reads it.
PLATFORM_RECORD = "platform.json"

# -- written by the launcher (worker.launcher) around the trainer process ----------------

#: The trainer's stdout and stderr, appended by every launch (a `$ command` line first).
TRAINER_LOG = "trainer.log"
#: `{"host", "pgid"}` of the trainer's process group, so a relaunch can kill a leftover.
LAUNCHER_RECORD = "launcher.json"
#: Held with `flock` by the trainer process (inherited from the launcher) while it lives.
FOLDER_LOCK = ".trainer.lock"

# -- outputs: written by `python -m trainer train` ---------------------------------------

#: The config the trainer ran with, as it resolved it (defaults filled in, the output folder).
RESOLVED_CONFIG = "config.resolved.yaml"
DATA_REPORT = "data_report.json"
METRICS = "metrics.jsonl"
#: `checkpoints/step_NNNNNNN/`, complete once it holds CHECKPOINT_COMPLETE.
CHECKPOINTS = "checkpoints"
CHECKPOINT_COMPLETE = "COMPLETE"
#: `export/merged/` and `export/adapter/` (LoRA): the release-ready folders.
EXPORT = "export"
EXPORT_MERGED = "merged"
EXPORT_ADAPTER = "adapter"
EVAL_GENERATIONS = "eval_generations.jsonl"
#: Written last, atomically; the launcher removes a previous launch's before it starts the trainer.
RESULT = "result.json"

# -- outputs of `python -m trainer eval --out DIR` (the platform's DIR: RUN/eval/<set>/) --

EVALUATIONS = "eval"
COMPARISON = "comparison.json"
COMPARISON_EXAMPLES = "comparison.jsonl"
COMPARISON_TABLE = "comparison.md"
#: Written instead of the comparison files when no `--base` is given.
SCORES = "scores.json"

INPUTS = (RUN_CONFIG, PLATFORM_RECORD)
LAUNCHER_FILES = (TRAINER_LOG, LAUNCHER_RECORD, FOLDER_LOCK)
#: Everything `train` may write at the top of the run folder (eval generations and export only when asked for).
TRAIN_OUTPUTS = (RESOLVED_CONFIG, DATA_REPORT, METRICS, CHECKPOINTS, EXPORT, EVAL_GENERATIONS, RESULT)
COMPARISON_OUTPUTS = (COMPARISON, COMPARISON_EXAMPLES, COMPARISON_TABLE)


class Status(enum.StrEnum):
    """`result.json`'s `status`."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class Exit(enum.IntEnum):
    """The exit status of every `python -m trainer` command."""

    SUCCEEDED = 0
    #: The run failed; the reason is in result.json.
    FAILED = 1
    #: Bad arguments or config: nothing was trained.
    USAGE = 2
    #: SIGTERM: the step in hand finished, then the run stopped.
    CANCELLED = 3


def exit_for(status: str) -> Exit:
    """The exit status of a `train` run that ended with `status` (anything but those two is a failure)."""
    codes: dict[str, Exit] = {Status.SUCCEEDED: Exit.SUCCEEDED, Status.CANCELLED: Exit.CANCELLED}
    return codes.get(status, Exit.FAILED)
