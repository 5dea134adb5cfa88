"""Talking to the auth-service replicas: read what each enforces, push what it lacks.

Per-endpoint timeouts and retries with backoff; the controller runs one round at a time,
so pushes never pile up and the newest snapshot always wins.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from authgate import bounded_json
from authgate_operator.kube import Endpoint

log = logging.getLogger("authgate.operator")
MAX_STATUS_BYTES = 16 * 1024 * 1024  # a replica's answer (its status lists every policy)


@dataclass
class ReplicaReport:
    endpoint: Endpoint
    generation: int | None = None
    version: str | None = None
    policies: list[dict] = field(default_factory=list)  # per policy: issuers' key state
    error: str | None = None

    def enforces(self, generation: int, version: str) -> bool:
        return self.generation == generation and self.version == version


@dataclass(frozen=True)
class Heard:
    """An endpoint's last answer: what it enforces, and the whole state it reported with
    that state's ETag (None when it was asked for its versions only)."""

    enforces: tuple[int | None, str | None]
    tag: str | None = None
    report: ReplicaReport | None = None


class Replicas:
    def __init__(self, token: Callable[[], str], timeout: float = 3.0, attempts: int = 3) -> None:
        self._token = token
        self.attempts = attempts
        self._heard: dict[str, Heard] = {}  # endpoint URL → its last answer
        self._client = httpx.AsyncClient(timeout=httpx.Timeout(timeout), follow_redirects=False, trust_env=False)

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token()}", "Content-Type": "application/json"}

    async def _call(
        self, method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        delay = 0.2
        for attempt in range(self.attempts):
            try:
                response = await self._client.request(
                    method, url, headers={**self._headers(), **(headers or {})}, content=body
                )
            except httpx.HTTPError as error:
                if attempt == self.attempts - 1:
                    raise
                log.info("replica unreachable, retrying", extra={"url": url, "error": type(error).__name__})
            else:
                if response.status_code < 500 or attempt == self.attempts - 1:
                    return response
            await asyncio.sleep(delay)
            delay *= 2
        raise AssertionError("unreachable")

    async def report(self, endpoint: Endpoint, policies: bool = True) -> ReplicaReport:
        """What `endpoint` enforces; with `policies`, also each policy's issuers' key state."""
        report = ReplicaReport(endpoint)
        query = "" if policies else "?policies=false"
        heard = self._heard.get(endpoint.url)
        last = heard if policies and heard is not None and heard.tag is not None else None
        headers = {"If-None-Match": last.tag} if last else None
        try:
            response = await self._call("GET", f"{endpoint.url}/admin/v1/snapshot{query}", headers=headers)
        except httpx.HTTPError as error:
            report.error = f"{endpoint.address}: unreachable ({type(error).__name__})"
            return report
        if response.status_code == 304 and last is not None and last.report is not None:
            return dataclasses.replace(last.report)
        if response.status_code != 200:
            report.error = f"{endpoint.address}: status answered {response.status_code}"
            return report
        try:
            state = bounded_json.read_object(response.content, MAX_STATUS_BYTES)
        except bounded_json.JSONInputError as error:
            report.error = f"{endpoint.address}: status is {error}"
            return report
        if state.get("ready"):
            report.generation, report.version = state.get("generation"), state.get("version")
        report.policies = state.get("policies") or []
        tag = response.headers.get("etag")
        if policies and tag:
            self._heard[endpoint.url] = Heard((report.generation, report.version), tag, dataclasses.replace(report))
        return report

    async def push(self, endpoint: Endpoint, body: bytes) -> tuple[int | None, str | None]:
        """(HTTP status, error message or None)."""
        try:
            response = await self._call("PUT", f"{endpoint.url}/admin/v1/snapshot", body)
        except httpx.HTTPError as error:
            return None, f"{endpoint.address}: unreachable ({type(error).__name__})"
        if response.status_code == 200:
            return 200, None
        try:
            detail = str(bounded_json.read_object(response.content, MAX_STATUS_BYTES).get("error_description", ""))
        except bounded_json.JSONInputError:
            detail = ""
        return response.status_code, f"{endpoint.address}: push answered {response.status_code} {detail}"[:300]

    async def sync(self, endpoints: list[Endpoint], generation: int, version: str, body: bytes) -> list[ReplicaReport]:
        """Bring every endpoint to (generation, version); report what each enforces after.

        An endpoint whose last answer was another snapshot gets this one first, and is
        asked for its state only after every push has been sent: a replica's state lists
        every policy, and reading it before pushing put megabytes of JSON in front of
        enforcement, on the cores the replicas' compiles need. An endpoint not heard from
        yet, or one whose state says otherwise after all (a restarted pod), is asked first
        and pushed to when it lacks the snapshot, in the same round."""
        target = (generation, version)
        self._heard = {e.url: self._heard[e.url] for e in endpoints if e.url in self._heard}
        # The policies' key state is read from one replica, the first by address (as
        # status.issuer_state takes it), the next one only when that one cannot tell; the
        # others are asked for their versions: each state is megabytes at 10,000 policies.
        by_address = sorted(endpoints, key=lambda e: e.address)
        reporter = by_address[0].url if by_address else None

        async def push_all(group: list[Endpoint]) -> dict[str, str | None]:
            answers = await asyncio.gather(*(self.push(e, body) for e in group))
            return {e.url: error for e, (_, error) in zip(group, answers, strict=True)}

        async def report_all(group: list[Endpoint]) -> list[ReplicaReport]:
            return list(await asyncio.gather(*(self.report(e, policies=e.url == reporter) for e in group)))

        first = [e for e in endpoints if e.url in self._heard and self._heard[e.url].enforces != target]
        errors = await push_all(first)
        reports = await report_all(endpoints)
        pushed = {e.url for e in first}
        behind = [r.endpoint for r in reports if not r.enforces(*target) and r.endpoint.url not in pushed]
        if behind:
            errors.update(await push_all(behind))
            again = {r.endpoint.url: r for r in await report_all(behind)}
            reports = [again.get(r.endpoint.url, r) for r in reports]
        for endpoint in by_address[1:]:
            if any(r.policies for r in reports):
                break
            full = await self.report(endpoint)
            reports = [full if r.endpoint.url == endpoint.url else r for r in reports]
        for report in reports:
            if report.error is None and not report.enforces(*target):
                report.error = errors.get(report.endpoint.url)
            heard = self._heard.get(report.endpoint.url)
            if report.error is None and (heard is None or heard.enforces != (report.generation, report.version)):
                self._heard[report.endpoint.url] = Heard((report.generation, report.version))
        return reports

    async def aclose(self) -> None:
        await self._client.aclose()
