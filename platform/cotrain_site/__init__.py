"""The Django project of cotrain: settings, root URLs, WSGI and ASGI entry points."""

# Django's documented Celery pattern: loading the Celery app with Django makes it the
# current app, so what the web process sends (`cotrain_site.jobs`) goes to the configured broker
# (not Celery's default amqp://localhost). `worker` is installed with the project.
from worker.celery_app import app as celery_app

__all__ = ["celery_app"]
