"""Conflicts between policies: hosts belong to a namespace, prefixes to the oldest claim."""

from tests.unit.policy.documents import BASE, STRICT, issues_of, write

from authgate.policy import compile_loaded, load_files


def test_two_policies_claiming_one_host_and_prefix_load_nothing(tmp_path):
    second = BASE.replace("name: api", "name: api2")
    problems = issues_of(tmp_path, BASE + "---\n" + second)
    assert any(
        "(document 2): spec.hosts: host mcp.example.com and prefix /mcp are already claimed by apps/api" in p
        for p in problems
    ), problems


def test_a_host_belongs_to_one_namespace(tmp_path):
    other = BASE.replace("namespace: apps", "namespace: other").replace(
        "https://mcp.example.com/mcp", "https://mcp.example.com/other"
    )
    loaded = load_files([write(tmp_path, BASE + "---\n" + other)])
    result = compile_loaded(loaded, 1, STRICT)
    assert [s.policy.ref for s in result.accepted] == ["apps/api"]
    assert result.issues[0].reason == "Conflict"
    assert "belongs to namespace apps" in result.issues[0].message


def test_the_oldest_policy_wins_a_host(tmp_path):
    younger = BASE.replace(
        "{name: api, namespace: apps}", "{name: api, namespace: apps, creationTimestamp: '2026-02-01T00:00:00Z'}"
    )
    older = BASE.replace(
        "{name: api, namespace: apps}", "{name: b, namespace: other, creationTimestamp: '2026-01-01T00:00:00Z'}"
    )
    result = compile_loaded(load_files([write(tmp_path, younger + "---\n" + older)]), 1, STRICT)
    assert [s.policy.ref for s in result.accepted] == ["other/b"]
