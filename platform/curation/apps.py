from django.apps import AppConfig


class CurationConfig(AppConfig):
    name = "curation"
    verbose_name = "Curation: dataset batches and versions"

    def ready(self) -> None:
        # Load the project's Celery app in every Django process, so that `task.delay()`
        # from a web request goes to the configured broker and queues (shared tasks
        # otherwise bind to Celery's default app). Done here rather than in
        # cotrain_site/__init__.py: by now DJANGO_SETTINGS_MODULE is settled, and
        # worker.celery_app only sets a default for it.
        import worker.celery_app  # noqa: F401
