"""The bench harness's parsers of wrk and ghz output, and the figures derived from them."""

from __future__ import annotations

import json
import math

import pytest
from bench import loadgen

WRK = """\
Running 3s test @ http://127.0.0.1:40111/ext-authz/envoy/mcp/tools
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     3.52ms  612.30us  12.01ms   90.11%
    Req/Sec     9.08k   312.11     9.51k    70.00%
  Latency Distribution
     50%    3.47ms
     75%    3.60ms
     90%    3.90ms
     99%    1.02s
  27240 requests in 3.00s, 5.12MB read
  Non-2xx or 3xx responses: 12
  Socket errors: connect 0, read 2, write 0, timeout 1
Requests/sec:   9079.33
Transfer/sec:      1.71MB
CDF 50 3470
CDF 99.9 11980
"""


def test_parse_wrk_reads_rate_percentiles_errors_and_cdf() -> None:
    measured = loadgen.parse_wrk(WRK)
    assert measured.rps == pytest.approx(9079.33)
    assert measured.requests == 27240
    assert measured.p50_ms == pytest.approx(3.47)
    assert measured.p99_ms == pytest.approx(1020.0)  # seconds converted
    assert measured.errors == 12 + 3
    assert measured.cdf == [(50.0, 3.47), (99.9, 11.98)]


def test_parse_wrk_microseconds_and_no_errors() -> None:
    text = WRK.replace("3.47ms", "870.00us").replace("  Non-2xx or 3xx responses: 12\n", "")
    text = text.replace("  Socket errors: connect 0, read 2, write 0, timeout 1\n", "")
    measured = loadgen.parse_wrk(text)
    assert measured.p50_ms == pytest.approx(0.87)
    assert measured.errors == 0


def test_parse_wrk_refuses_what_is_not_wrk_output() -> None:
    with pytest.raises(ValueError, match="cannot parse wrk output"):
        loadgen.parse_wrk("unable to connect to 127.0.0.1:1 Connection refused")


def _ghz(**overrides) -> str:
    report = {
        "endReason": "timeout",
        "count": 4830,
        "rps": 2414.04,
        "statusCodeDistribution": {"OK": 4790, "Unavailable": 32, "PermissionDenied": 8},
        "errorDistribution": {
            "rpc error: code = Unavailable desc = read tcp: use of closed network connection": 32,
            "rpc error: code = PermissionDenied desc = denied": 8,
        },
        "latencyDistribution": [
            {"percentage": 10, "latency": 6842350},
            {"percentage": 50, "latency": 11894593},
            {"percentage": 99, "latency": 34713434},
        ],
    }
    report.update(overrides)
    return json.dumps(report)


def test_parse_ghz_converts_nanoseconds_and_ignores_the_calls_cut_at_the_end() -> None:
    measured = loadgen.parse_ghz(_ghz())
    assert measured.rps == pytest.approx(2414.04)
    assert measured.requests == 4830
    assert measured.p50_ms == pytest.approx(11.894593)
    assert measured.p99_ms == pytest.approx(34.713434)
    assert measured.cdf[0] == (10.0, pytest.approx(6.84235))
    assert measured.errors == 8  # the 32 calls in flight when -z ended are not the server's failures
    assert measured.statuses["OK"] == 4790


def test_parse_ghz_counts_every_failure_when_the_run_did_not_end_by_time() -> None:
    assert loadgen.parse_ghz(_ghz(endReason="normal")).errors == 40


def test_parse_ghz_without_latencies_gives_nan() -> None:
    measured = loadgen.parse_ghz(_ghz(latencyDistribution=None))
    assert math.isnan(measured.p50_ms) and measured.cdf == []


def test_parse_ghz_refuses_non_json() -> None:
    with pytest.raises(ValueError, match="cannot parse ghz output"):
        loadgen.parse_ghz("Error: connection refused")


def test_wrk_script_cycles_tokens_from_a_file_and_prints_the_cdf(tmp_path) -> None:
    script = loadgen.wrk_script({"Host": "bench.example.com"}, tmp_path / "tokens.txt")
    assert 'wrk.headers["Host"] = "bench.example.com"' in script
    assert f'io.lines("{tmp_path / "tokens.txt"}")' in script
    assert 'wrk.headers["Authorization"] = "Bearer " .. tokens[i]' in script
    assert 'os.getenv("BENCH_TOKEN_OFFSET")' in script  # a run goes on where the previous one stopped
    assert "latency:percentile(p)" in script and "99.9" in script


def test_cpu_per_request_per_role() -> None:
    measured = loadgen.Measured(rps=1000.0, requests=10_000, p50_ms=1.0, p99_ms=2.0, errors=0)
    measured.cpu = {"envoy": 0.3, "authgate": 0.5}
    assert measured.cpu_us_per_request() == pytest.approx(800.0)
    assert measured.cpu_us_per_request("envoy") == pytest.approx(300.0)


def test_cache_counters_from_a_metrics_page() -> None:
    from bench.table import parse_cache_counters

    text = (
        "# HELP authgate_verified_token_cache_total Verified-token cache lookups.\n"
        "# TYPE authgate_verified_token_cache_total counter\n"
        'authgate_verified_token_cache_total{result="hit"} 1234.0\n'
        'authgate_verified_token_cache_total{result="miss"} 5.0\n'
        'authgate_verified_token_cache_created{result="hit"} 1.7e+09\n'
    )
    assert parse_cache_counters(text) == {"hit": 1234.0, "miss": 5.0}
    measured = loadgen.Measured(rps=1.0, requests=1, p50_ms=1.0, p99_ms=1.0, errors=0, cache={"hit": 3.0, "miss": 1.0})
    assert measured.cache_hit_ratio == pytest.approx(0.75)
