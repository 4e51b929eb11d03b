"""The Django project of cotrain: settings, root URLs, WSGI and ASGI entry points."""
