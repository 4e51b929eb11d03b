"""API token authentication (`Authorization: Token <key>`), looking keys up by their hash."""

from rest_framework.authentication import TokenAuthentication
from rest_framework.exceptions import AuthenticationFailed

from accounts.models import ApiToken, User
from accounts.selectors import api_token_by_hash
from accounts.services import api_token_hash


class ApiTokenAuthentication(TokenAuthentication):
    # A subclass of DRF's class, so that the OpenAPI schema still describes the header.
    def authenticate_credentials(self, key: str) -> tuple[User, ApiToken]:
        token = api_token_by_hash(key_hash=api_token_hash(key))
        if token is None or not token.user.is_active:
            raise AuthenticationFailed("Invalid, expired or revoked token: create a new one at /accounts/token/.")
        return token.user, token
