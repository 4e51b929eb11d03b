from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin
from django.db.models import QuerySet
from django.http import HttpRequest

from accounts.forms import AdminLoginForm
from accounts.models import ApiToken, LoginLockout, User
from accounts.services import api_tokens_revoke, login_lockouts_clear, user_unlock

# /admin/ logs in through the same lockout as the site (the backend refuses; this form says why).
admin.site.login_form = AdminLoginForm


@admin.register(User)
class CotrainUserAdmin(UserAdmin):
    actions = ["unlock"]

    @admin.action(description="Lift the log-in lockout of the selected accounts")
    def unlock(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        lifted = sum(user_unlock(username=user.username) for user in queryset)
        self.message_user(request, f"{lifted} lockout(s) lifted.", messages.SUCCESS)


@admin.register(LoginLockout)
class LoginLockoutAdmin(admin.ModelAdmin):
    """Who is locked out of logging in (account names and client addresses), and the way to lift it."""

    list_display = ["kind", "key", "failures", "created_at", "locked_until"]
    list_filter = ["kind"]
    search_fields = ["key"]
    actions = ["lift"]

    @admin.action(description="Lift the selected lockouts")
    def lift(self, request: HttpRequest, queryset: QuerySet[LoginLockout]) -> None:
        lifted = login_lockouts_clear(lockouts=list(queryset))
        self.message_user(request, f"{lifted} lockout(s) lifted.", messages.SUCCESS)

    # Rows are written by failed log-ins and removed by lifting (which also resets the counter).
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: LoginLockout | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: LoginLockout | None = None) -> bool:
        return False


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ["prefix", "user", "created_at", "expires_at", "revoked_at"]
    list_select_related = ["user"]
    search_fields = ["user__username", "prefix"]
    readonly_fields = ["user", "prefix", "key_hash", "created_at", "expires_at", "revoked_at"]
    actions = ["revoke"]

    @admin.action(description="Revoke the selected tokens")
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> None:
        revoked = api_tokens_revoke(pks=list(queryset.values_list("pk", flat=True)))
        self.message_user(request, f"{revoked} token(s) revoked.", messages.SUCCESS)

    # A key is shown once to its owner (on their token page); an admin cannot make one.
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: ApiToken | None = None) -> bool:
        return False
