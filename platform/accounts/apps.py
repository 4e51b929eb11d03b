from django.apps import AppConfig
from django.db.models.signals import post_migrate


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Accounts and roles"

    def ready(self) -> None:
        # Groups reference permissions of every app, and Django creates permissions
        # only after migrations (in post_migrate), so roles are synced there too.
        post_migrate.connect(_sync_roles, sender=self)


def _sync_roles(**kwargs: object) -> None:
    from accounts.services import roles_sync

    roles_sync(using=str(kwargs.get("using", "default")))
