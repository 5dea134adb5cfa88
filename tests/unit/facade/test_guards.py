"""Per-replica guards: token-bucket rate limits and single use."""

from authgate.facade.guards import RateLimit, RateLimiter, UsedOnce


def test_a_burst_passes_then_the_rate_limit_refuses_until_tokens_refill():
    limiter = RateLimiter({"register": RateLimit(per_minute=60, burst=3)})
    assert [limiter.allow("register", "10.0.0.1", now=0.0) for _ in range(4)] == [True, True, True, False]
    assert limiter.allow("register", "10.0.0.2", now=0.0)  # per address
    assert not limiter.allow("register", "10.0.0.1", now=0.5)
    assert limiter.allow("register", "10.0.0.1", now=1.0)  # one token per second at 60/min


def test_an_unlimited_group_always_passes():
    limiter = RateLimiter({})
    assert all(limiter.allow("token", "10.0.0.1", now=0.0) for _ in range(1000))


def test_the_rate_limiter_forgets_the_least_recent_addresses_beyond_its_bound():
    limiter = RateLimiter({"token": RateLimit(per_minute=1, burst=1)}, max_keys=2)
    assert limiter.allow("token", "a", now=0.0)
    assert limiter.allow("token", "b", now=0.0)
    assert limiter.allow("token", "c", now=0.0)  # evicts a
    assert limiter.allow("token", "a", now=0.0)  # a starts afresh
    assert not limiter.allow("token", "c", now=0.0)


def test_an_identifier_is_accepted_once_until_it_expires():
    used = UsedOnce()
    assert used.first_use("code:1", expires=100.0, now=0.0)
    assert not used.first_use("code:1", expires=100.0, now=50.0)
    assert used.first_use("code:2", expires=100.0, now=50.0)
    # after expiry the sealed value no longer opens anyway: the memory may drop it
    assert used.first_use("code:1", expires=300.0, now=200.0)


def test_single_use_memory_is_bounded():
    used = UsedOnce(max_entries=10)
    for index in range(100):
        assert used.first_use(f"id:{index}", expires=1e12, now=0.0)
    assert len(used) <= 10


def test_single_use_memory_when_full_forgets_the_least_recently_used_first():
    used = UsedOnce(max_entries=2)
    assert used.first_use("a", expires=1e12, now=0.0)
    assert used.first_use("b", expires=1e12, now=0.0)
    assert used.first_use("c", expires=1e12, now=0.0)  # a is forgotten
    assert not used.first_use("b", expires=1e12, now=0.0)
    assert not used.first_use("c", expires=1e12, now=0.0)
    assert used.first_use("a", expires=1e12, now=0.0)


def test_a_rate_limit_bucket_is_forgotten_once_it_would_be_full_again():
    limiter = RateLimiter({"token": RateLimit(per_minute=60, burst=2)})
    assert limiter.allow("token", "a", now=0.0)
    assert limiter.allow("token", "a", now=0.0)
    assert not limiter.allow("token", "a", now=0.0)
    assert len(limiter._buckets) == 1
    assert limiter.allow("token", "a", now=2.0)
    assert limiter.allow("token", "a", now=10.0)
    assert limiter.allow("token", "a", now=10.0)
    assert not limiter.allow("token", "a", now=10.0)
