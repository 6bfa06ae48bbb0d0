"""The dashboard in a real browser: Debian's Chromium driven by Playwright.

A miss and two hits through the OpenAI SDK, then the page: every tile's
`data-value` equals `/v1/cache/stats` and its text is that value formatted;
no console errors, no request leaves reprise's origin, the key never appears
in a URL; a purge from the page makes the next request a miss; screenshots
(desktop and phone width) are saved under target/.
"""

from __future__ import annotations

import re
import time
import uuid
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect, sync_playwright

from conftest import REPO_ROOT, make_client

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def fmt_rate(v: float) -> str:
    return f"{v * 100:.1f}%"


def fmt_int(v: float) -> str:
    return f"{round(v):,}"


def fmt_usd(v: float) -> str:
    return "$" + (f"{v:.6f}" if v != 0 and abs(v) < 1 else f"{v:.2f}")


def fmt_ms(v: float) -> str:
    return f"{round(v)} ms" if v < 1000 else f"{v / 1000:.1f} s"


def tiles(stats: dict) -> dict[str, tuple[float, str]]:
    usd = stats["usd"]
    return {
        "kpi-hit-rate": (stats["hit_rate"], fmt_rate(stats["hit_rate"])),
        "kpi-requests": (stats["requests"], fmt_int(stats["requests"])),
        "kpi-spend-usd": (usd["spent"], fmt_usd(usd["spent"])),
        "kpi-saved-usd": (usd["saved_by_cache"], fmt_usd(usd["saved_by_cache"])),
        "kpi-provider-saved-usd": (
            usd["saved_by_provider_cache"],
            fmt_usd(usd["saved_by_provider_cache"]),
        ),
        "kpi-tokens-saved": (stats["tokens_saved"], fmt_int(stats["tokens_saved"])),
        "kpi-latency-saved-ms": (stats["latency_saved_ms"], fmt_ms(stats["latency_saved_ms"])),
        "kpi-would-save-usd": (
            stats["observe"]["would_save_usd"],
            fmt_usd(stats["observe"]["would_save_usd"]),
        ),
    }


def chat(client, prompt: str):
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": prompt}]
    )
    return raw.headers.get("x-cache-status")


def wait_cached(http: httpx.Client, prompt: str) -> None:
    """The write is off the response path: wait for it through the direct
    cache API (which does not count as a request in the stats)."""
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": prompt}]}
    deadline = time.monotonic() + 10
    while http.post("/v1/cache/get", json=body).status_code != 200:
        assert time.monotonic() < deadline, "entry never cached"
        time.sleep(0.01)


def wait_ready(page: Page) -> None:
    """Waits for `document.body.dataset.ready = "1"` (a selector, not a JS
    predicate: the page's CSP forbids eval, which predicates would need)."""
    page.locator("body[data-ready='1']").wait_for(state="attached", timeout=15000)


@pytest.fixture
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (.ci/run does)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


def test_dashboard_shows_the_stats_and_purges(reprise_url: str, prompt: str, browser) -> None:
    key = f"sk-dashboard-{uuid.uuid4().hex}"
    client = make_client(reprise_url, key)
    http = httpx.Client(base_url=reprise_url, headers={"Authorization": f"Bearer {key}"}, timeout=10)
    assert chat(client, prompt) == "miss"
    wait_cached(http, prompt)
    assert chat(client, prompt) == "hit"
    assert chat(client, prompt) == "hit"

    page = browser.new_page(viewport={"width": 1280, "height": 900})
    console_errors: list[str] = []
    page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: console_errors.append(str(e)))
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))

    response = page.goto(f"{reprise_url}/dashboard#key={key}")
    assert response is not None and response.status == 200
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp
    wait_ready(page)
    assert key not in page.url, "the key leaves the URL"
    assert page.evaluate("sessionStorage.getItem('reprise.dashboard.key')") == key

    stats = http.get("/v1/cache/stats").json()
    assert stats["requests"] == 3
    assert stats["hits"]["total"] == 2
    for testid, (value, text) in tiles(stats).items():
        el = page.get_by_test_id(testid)
        assert float(el.get_attribute("data-value")) == pytest.approx(value, rel=1e-12, abs=1e-12), testid
        assert el.inner_text().strip() == text, testid
    assert page.get_by_test_id("table-models").inner_text().count("gpt-4o-mini") == 1
    assert page.locator("#chart canvas").count() >= 1, "the chart is drawn"
    assert page.get_by_test_id("mode").inner_text() == "cache"

    target = REPO_ROOT / "target"
    target.mkdir(exist_ok=True)
    page.screenshot(path=str(target / "dashboard.png"), full_page=True)

    # Purge from the page; the next request is a miss.
    page.get_by_test_id("purge-submit").click()
    expect(page.get_by_test_id("purge-result")).to_have_text(re.compile(r"^Purged"), timeout=10000)
    assert "Purged 1 entries" in page.get_by_test_id("purge-result").inner_text()
    assert chat(client, prompt) == "miss"

    # Phone width: nothing wider than the screen.
    page.set_viewport_size({"width": 390, "height": 844})
    page.reload()
    wait_ready(page)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.screenshot(path=str(target / "dashboard-phone.png"), full_page=True)

    assert console_errors == []
    origin = reprise_url.rstrip("/")
    assert all(u.startswith(origin) or u.startswith("data:") for u in requests), requests
    assert not any(key in u for u in requests), "the key is never sent in a URL"
    http.close()
    client.close()


def test_dashboard_asks_for_a_key_and_refreshes(reprise_url: str, browser) -> None:
    key = f"sk-dashboard-{uuid.uuid4().hex}"
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{reprise_url}/dashboard")
    page.get_by_test_id("key-input").fill(key)
    page.get_by_test_id("key-submit").click()
    wait_ready(page)
    assert page.get_by_test_id("kpi-requests").get_attribute("data-value") == "0"
    # It refreshes itself (every 5 s).
    page.locator("body:not([data-refreshes='1'])[data-refreshes]").wait_for(
        state="attached", timeout=12000
    )
    assert errors == []
