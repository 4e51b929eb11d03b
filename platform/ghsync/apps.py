from django.apps import AppConfig


class GhsyncConfig(AppConfig):
    # Never `github`: that is PyGithub's module name, and apps are imported by bare name.
    name = "ghsync"
    verbose_name = "GitHub intake"
    default_auto_field = "django.db.models.BigAutoField"
