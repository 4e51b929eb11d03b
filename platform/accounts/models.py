from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.db import models
from django.utils import timezone


class User(AbstractUser):
    """A person on cotrain. Roles are groups (see `accounts.roles`), not fields here."""

    class Meta:
        db_table = "accounts_user"


class ApiToken(models.Model):
    """An API key, known here only by its sha256: the key is shown once, when it is made.

    A leaked database (or backup) then gives no working key. The key is 32 random
    bytes, so an unsalted fast hash is enough: there is nothing to guess.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    key_hash = models.CharField(max_length=64, unique=True)
    # The key's first characters, so that a person can tell which key a page or log means.
    prefix = models.CharField(max_length=8)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.prefix}… of {self.user_id}"

    @property
    def is_usable(self) -> bool:
        return self.revoked_at is None and self.expires_at > timezone.now()


class LockoutKind(models.TextChoices):
    ACCOUNT = "account", "account"
    ADDRESS = "address", "client address"


class LoginLockout(models.Model):
    """An account name or a client address that may not log in until `locked_until`.

    Written when the failure count (kept in the cache) reaches its limit, so that
    maintainers can see locks and lift them (admin, `manage.py unlock_user`). An
    account lock is keyed by the name as typed, whether or not such a user exists:
    a name that does not exist locks the same way, so the lock message tells a
    guesser nothing about which names are real.
    """

    kind = models.CharField(max_length=8, choices=LockoutKind.choices)
    key = models.CharField(max_length=150)
    failures = models.PositiveIntegerField()
    created_at = models.DateTimeField(default=timezone.now)
    locked_until = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["kind", "key"], name="accounts_lockout_kind_key")]
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.key}"
