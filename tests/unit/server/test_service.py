"""Service settings reach the parts they configure."""

from authgate.server.service import AuthService, ServiceSettings


def test_token_cache_settings_are_used():
    service = AuthService(ServiceSettings(token_cache_entries=5, token_cache_ttl=1.0))
    assert service.validator.cache.max_entries == 5
    assert service.validator.cache.max_ttl == 1.0
