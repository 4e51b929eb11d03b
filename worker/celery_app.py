"""The Celery app: `celery -A worker.celery_app worker -Q default` (or `-Q gpu` on GPU hosts).

Broker and backend come from Django settings (CELERY_* read from the environment in
`cotrain_site.settings.base`): kombu's filesystem transport under var/ by default,
Redis when REDIS_URL or CELERY_BROKER_URL is set. Tasks live in the apps' `tasks.py`.
"""

import os
import sys
from pathlib import Path

from celery import Celery
from kombu import Exchange, Queue

# platform/ is a source folder, not a package (see manage.py); append, never prepend.
PLATFORM_DIR = Path(__file__).resolve().parent.parent / "platform"
if str(PLATFORM_DIR) not in sys.path:
    sys.path.append(str(PLATFORM_DIR))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cotrain_site.settings.dev")

DEFAULT_QUEUE = "default"
GPU_QUEUE = "gpu"
# Tasks that run the trainer need a GPU host; everything else runs on `default`.
GPU_TASK_PATTERNS = ["training.tasks.train_*", "training.tasks.evaluate_*"]

app = Celery("cotrain")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.task_queues = [Queue(name, Exchange(name), routing_key=name) for name in (DEFAULT_QUEUE, GPU_QUEUE)]
app.conf.task_default_queue = DEFAULT_QUEUE
app.conf.task_default_exchange = DEFAULT_QUEUE
app.conf.task_default_routing_key = DEFAULT_QUEUE
app.conf.task_routes = [{pattern: {"queue": GPU_QUEUE, "routing_key": GPU_QUEUE} for pattern in GPU_TASK_PATTERNS}]
# A training task holds its worker for hours: take one message at a time, and
# acknowledge it only when it is done so that a killed worker's task is redelivered.
app.conf.worker_prefetch_multiplier = 1
app.conf.task_acks_late = True
app.conf.task_reject_on_worker_lost = True
app.autodiscover_tasks()


def _ensure_filesystem_broker_folders() -> None:
    options = app.conf.broker_transport_options or {}
    for key in ("data_folder_in", "data_folder_out", "control_folder"):
        if options.get(key):
            Path(options[key]).mkdir(parents=True, exist_ok=True)


_ensure_filesystem_broker_folders()
