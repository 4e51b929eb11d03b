from django.contrib.auth.models import AbstractUser


class User(AbstractUser):
    """A person on cotrain. Roles are groups (see `accounts.roles`), not fields here."""

    class Meta:
        db_table = "accounts_user"
