"""Headless Debian Chromium driven by Playwright, for tests where a person would use a browser.

    require_tool(browser_problem())
    with chromium_page(trust_ca=ca.ca_path, resolve={"mcp.example.test": "127.0.0.1"}) as page:
        page.goto("https://mcp.example.test:8443/")
        page.get_by_role("button", name="Allow").click()

    async with async_chromium_page(trust_ca=ca.ca_path) as page:   # inside an async test
        await page.goto(url)

Playwright's own browser download cannot run here, so Playwright launches Debian's
`/usr/bin/chromium` (`executable_path`) with the flags in `CHROMIUM_FLAGS` and a fresh
user-data dir per call. The sync API works in plain `def` tests (pytest-asyncio's session
loop is not running then) but refuses to run where an asyncio loop is running, i.e. inside
an `async def` test or fixture: use `async_chromium_page` there.

Trusting a test CA: Chromium on Linux trusts the CAs of the NSS database in
`$HOME/.pki/nssdb` on top of its root store. Each launch gets its own throwaway HOME
whose NSS database holds only `trust_ca` (made with `certutil`, Debian
`libnss3-tools`), so certificates are verified for real (a wrong host name still fails
with ERR_CERT_COMMON_NAME_INVALID) and nothing outside the temporary directory
changes. Chosen over Playwright's `ignore_https_errors=True` and over
`--ignore-certificate-errors-spki-list`, which both accept a certificate for any host
name: a test of redirects between host names should fail when a name is wrong.
`ignore_https_errors=True` remains available for pages whose certificate is not
from a TestCA.

Host names: `resolve={"mcp.example.test": "127.0.0.1"}` becomes
`--host-resolver-rules=MAP mcp.example.test 127.0.0.1`; `*.localhost` needs no rule.

When the `with` body raises and `artifacts_dir` is given, a screenshot and the page's
HTML are written there (`browser-failure.png`, `browser-failure.html`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # playwright is imported when a browser starts, so a missing one only skips
    from playwright.async_api import Page as AsyncPage
    from playwright.sync_api import Page

CHROMIUM = Path("/usr/bin/chromium")
CERTUTIL = "certutil"
# From /work/shared/FIELD-NOTES.md; Playwright adds its own (--headless among them) too.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)
INSTALL_HINT = (
    "run `bash hack/install-system-packages.sh` (Debian chromium and libnss3-tools) "
    "and `pip install -e '.[test]'` (playwright)"
)


def browser_problem() -> str | None:
    """Why the browser cannot run here (for `require_tool`), or None when it can."""
    missing = []
    if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
        missing.append(f"{CHROMIUM} (Debian chromium)")
    if shutil.which(CERTUTIL) is None:
        missing.append("certutil (Debian libnss3-tools)")
    try:
        import playwright  # noqa: F401
    except ImportError:
        missing.append("the Python package playwright")
    if not missing:
        return None
    return f"browser tests need {', '.join(missing)}: {INSTALL_HINT}"


@dataclass(frozen=True)
class LaunchOptions:
    """Keyword arguments for Playwright's `launch_persistent_context`, shared by both APIs."""

    user_data_dir: Path
    kwargs: dict[str, Any]


def launch_options(
    work_dir: Path,
    *,
    trust_ca: str | os.PathLike[str] | None,
    resolve: Mapping[str, str] | None,
    extra_args: Sequence[str],
    ignore_https_errors: bool,
    page_timeout: float,
) -> LaunchOptions:
    """Lay out a fresh profile (and an NSS database trusting `trust_ca`) under `work_dir`."""
    user_data_dir = work_dir / "profile"
    user_data_dir.mkdir(parents=True)
    home = work_dir / "home"
    home.mkdir()
    if trust_ca is not None:
        nss_database(home, Path(trust_ca))
    args = list(CHROMIUM_FLAGS)
    if resolve:
        args.append("--host-resolver-rules=" + ", ".join(f"MAP {name} {address}" for name, address in resolve.items()))
    args += extra_args
    # HOME points Chromium at the throwaway NSS database; XDG dirs keep caches out of the real HOME.
    env = {
        **os.environ,
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_CACHE_HOME": str(home / ".cache"),
    }
    return LaunchOptions(
        user_data_dir=user_data_dir,
        kwargs={
            "executable_path": str(CHROMIUM),
            "headless": True,
            "args": args,
            "env": env,
            "ignore_https_errors": ignore_https_errors,
            "timeout": page_timeout * 1000,
        },
    )


def nss_database(home: Path, ca_pem: Path) -> Path:
    """Create `home/.pki/nssdb` trusting `ca_pem` to issue server certificates."""
    database = home / ".pki" / "nssdb"
    database.mkdir(parents=True)
    for command in (
        [CERTUTIL, "-N", "-d", f"sql:{database}", "--empty-password"],
        [CERTUTIL, "-A", "-d", f"sql:{database}", "-n", "authgate test CA", "-t", "C,,", "-i", str(ca_pem)],
    ):
        result = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}): {result.stderr.strip()}")
    return database


@contextlib.contextmanager
def _work_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="chromium-") as directory:
        yield Path(directory)


@contextlib.contextmanager
def chromium_page(
    *,
    trust_ca: str | os.PathLike[str] | None = None,
    resolve: Mapping[str, str] | None = None,
    extra_args: Sequence[str] = (),
    ignore_https_errors: bool = False,
    page_timeout: float = 15.0,
    artifacts_dir: str | os.PathLike[str] | None = None,
) -> Iterator[Page]:
    """A page in a fresh headless Chromium (sync API); `page.context` is its browser context.

    `trust_ca`: a CA PEM to trust; `resolve`: host name -> address; `extra_args`: more
    Chromium flags; `page_timeout`: seconds for the launch and the page's default timeout."""
    from playwright.sync_api import sync_playwright

    with _work_dir() as work_dir, sync_playwright() as playwright:
        options = launch_options(
            work_dir,
            trust_ca=trust_ca,
            resolve=resolve,
            extra_args=extra_args,
            ignore_https_errors=ignore_https_errors,
            page_timeout=page_timeout,
        )
        context = playwright.chromium.launch_persistent_context(options.user_data_dir, **options.kwargs)
        try:
            context.set_default_timeout(page_timeout * 1000)
            page = context.pages[0] if context.pages else context.new_page()
            try:
                yield page
            except BaseException:
                if artifacts_dir is not None:
                    _save_failure(page, Path(artifacts_dir))
                raise
        finally:
            context.close()


@contextlib.asynccontextmanager
async def async_chromium_page(
    *,
    trust_ca: str | os.PathLike[str] | None = None,
    resolve: Mapping[str, str] | None = None,
    extra_args: Sequence[str] = (),
    ignore_https_errors: bool = False,
    page_timeout: float = 15.0,
    artifacts_dir: str | os.PathLike[str] | None = None,
) -> AsyncIterator[AsyncPage]:
    """`chromium_page` for async code (Playwright's async API); same arguments."""
    from playwright.async_api import async_playwright

    with _work_dir() as work_dir:
        async with async_playwright() as playwright:
            options = await asyncio.to_thread(
                launch_options,
                work_dir,
                trust_ca=trust_ca,
                resolve=resolve,
                extra_args=extra_args,
                ignore_https_errors=ignore_https_errors,
                page_timeout=page_timeout,
            )
            context = await playwright.chromium.launch_persistent_context(options.user_data_dir, **options.kwargs)
            try:
                context.set_default_timeout(page_timeout * 1000)
                page = context.pages[0] if context.pages else await context.new_page()
                try:
                    yield page
                except BaseException:
                    if artifacts_dir is not None:
                        await _async_save_failure(page, Path(artifacts_dir))
                    raise
            finally:
                await context.close()


def _save_failure(page: Page, directory: Path) -> None:
    with contextlib.suppress(Exception):  # the page may be gone: the original error matters more
        _write_failure(directory, page.screenshot(full_page=True), page.url, page.content())


async def _async_save_failure(page: AsyncPage, directory: Path) -> None:
    with contextlib.suppress(Exception):
        screenshot = await page.screenshot(full_page=True)
        await asyncio.to_thread(_write_failure, directory, screenshot, page.url, await page.content())


def _write_failure(directory: Path, screenshot: bytes, url: str, content: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "browser-failure.png").write_bytes(screenshot)
    (directory / "browser-failure.html").write_text(f"<!-- {url} -->\n{content}")
