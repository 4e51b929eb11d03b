"""cotrain's Celery app and queue routing (`worker.celery_app`); no business logic here."""
