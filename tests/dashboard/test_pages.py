"""The page and its assets come from the package, /docs works offline, sign-in works by
keyboard and by a `#key=` link, the model view shows what the API says."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import httpx
from playwright.sync_api import expect

from leadscore.dashboard.routes import STATIC_DIR

from ..api.conftest import Deployment
from .conftest import Watched, sign_in

ASSET = re.compile(r'(?:src|href)="([^"#]+)"')


def test_the_page_is_served_at_the_root_and_at_dashboard(client: httpx.Client) -> None:
    for path in ("/", "/dashboard"):
        response = client.get(path)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/html")
        policy = response.headers["content-security-policy"]
        assert "default-src 'self'" in policy
        assert "connect-src 'self'" in policy
        assert response.text == (STATIC_DIR / "index.html").read_text(encoding="utf-8")


def test_every_asset_the_page_names_is_local_and_served(client: httpx.Client) -> None:
    html = client.get("/dashboard").text
    assets = ASSET.findall(html)
    assert len(assets) >= 5
    for asset in assets:
        assert asset.startswith("/dashboard/static/"), asset  # never another host
        assert client.get(asset).status_code == 200, asset
    # Every module imports only relative paths inside the package.
    for module in (STATIC_DIR / "js").glob("*.js"):
        for imported in re.findall(r'(?:from|import\()\s*[`"]([^`"]+)[`"]', module.read_text()):
            assert imported.startswith(("./", "../vendor/")), imported
    assert client.get("/dashboard/static/vendor/uplot/uPlot.esm.js").status_code == 200
    assert client.get("/dashboard/static/nothing.js").status_code == 404


def test_vendored_libraries_ship_with_their_licenses() -> None:
    vendor = STATIC_DIR / "vendor"
    readme = (vendor / "README.md").read_text()
    for directory, version in (("uplot", "1.6.32"), ("swagger-ui", "5.35.0")):
        assert (vendor / directory / "LICENSE").stat().st_size > 500
        assert version in readme
    assert "MIT License" in (vendor / "uplot" / "LICENSE").read_text()


def test_the_wheel_would_include_the_static_files() -> None:
    """Hatch ships every file of the package not ignored by git: none of them may be."""
    ignored = Path(__file__).resolve().parents[2] / ".gitignore"
    patterns = [line for line in ignored.read_text().splitlines() if line and line[0] != "#"]
    for path in STATIC_DIR.rglob("*"):
        for pattern in patterns:
            name = pattern.strip("/")
            assert name not in path.relative_to(STATIC_DIR).parts, (path, pattern)


def test_docs_render_offline(open_page: Callable[..., Watched], client: httpx.Client) -> None:
    html = client.get("/docs").text
    assert "cdn" not in html.lower()
    watched = open_page()
    watched.page.goto(f"{watched.origin}/docs")
    expect(watched.page.locator(".swagger-ui .info .title")).to_contain_text("LeadScore")
    expect(watched.page.locator(".opblock-tag-section").first).to_be_visible()
    watched.shot("docs")


def test_sign_in_with_the_keyboard_only(
    open_page: Callable[..., Watched], deployment: Deployment
) -> None:
    watched = open_page()
    page = watched.page
    page.goto(f"{watched.origin}/dashboard")
    field = page.get_by_label("API key")
    expect(field).to_be_focused()  # the sign-in form takes the focus
    watched.shot("sign-in")
    page.keyboard.type(deployment.keys["acme-agent"])
    page.keyboard.press("Enter")
    expect(page.locator("#live-status")).to_have_attribute("data-state", "live")
    expect(page.locator("#view-queue")).to_be_visible()
    expect(page.locator("#who")).to_have_text("acme · agent")
    stored = page.evaluate("JSON.stringify(sessionStorage)") + page.evaluate(
        "JSON.stringify(localStorage)"
    )
    assert "access_token" not in stored
    assert deployment.keys["acme-agent"] not in stored
    assert page.evaluate("JSON.parse(sessionStorage['leadscore.session']).token").count(".") == 2
    # The view has the focus now; the first Tab reaches the filters, Shift+Tab the header.
    expect(page.locator("#main")).to_be_focused()
    page.keyboard.press("Tab")
    expect(page.get_by_label("Search")).to_be_focused()
    page.keyboard.press("Shift+Tab")
    expect(page.locator("#sign-out")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("#view-sign-in")).to_be_visible()
    expect(field).to_be_focused()
    assert page.evaluate("sessionStorage.length") == 0
    expect(page.locator("#live-status")).to_have_attribute("data-state", "offline")


def test_a_refused_key_says_so(open_page: Callable[..., Watched]) -> None:
    watched = open_page()
    page = watched.page
    page.goto(f"{watched.origin}/dashboard")
    page.get_by_label("API key").fill("lsk_not_a_key")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("refused")
    expect(page.locator("#view-sign-in")).to_be_visible()
    watched.expect_errors("401")  # the browser reports the refused request itself


def test_a_key_link_signs_in_and_leaves_the_address_bar(
    open_page: Callable[..., Watched], deployment: Deployment
) -> None:
    watched = open_page()
    page = watched.page
    key = deployment.keys["acme-viewer"]
    page.goto(f"{watched.origin}/#key={key}")
    expect(page.locator("#live-status")).to_have_attribute("data-state", "live")
    assert key not in page.url
    assert page.evaluate("location.hash") == "#/queue"
    # A reload keeps the session (the token is in sessionStorage) without the key.
    page.reload()
    expect(page.locator("#live-status")).to_have_attribute("data-state", "live")
    expect(page.locator("#who")).to_have_text("acme · viewer")
    page.go_back()  # the key's entry was replaced, not kept: Back leaves the page
    assert page.url == "about:blank"


def test_the_model_view_shows_the_serving_model(
    open_page: Callable[..., Watched], deployment: Deployment, client: httpx.Client
) -> None:
    headers = {"X-API-Key": deployment.keys["acme-admin"]}
    status = client.get("/api/v1/ml/model/status", headers=headers).json()
    for scheme in ("light", "dark"):
        watched = open_page(scheme=scheme)
        sign_in(watched, deployment.keys["acme-admin"])
        watched.page.get_by_role("link", name="Model").click()
        body = watched.page.locator("#model-body")
        expect(body).to_contain_text(status["version"])
        auc = f"{status['metrics']['conversion']['auc']:.3f}"
        expect(body.get_by_role("row", name=re.compile("Conversion"))).to_contain_text(auc)
        expect(body).to_contain_text("Drift")
        expect(body).to_contain_text("Trial")
        expect(body).to_contain_text("Bootstrap")  # the registry's first champion
        watched.shot(f"model-{scheme}")


def theme_colours(css: str) -> dict[str, dict[str, str]]:
    """The stylesheet's colour variables: light (`:root`) and dark (the media query's)."""
    light = re.search(r"^:root \{(.*?)^\}", css, re.M | re.S)
    dark = re.search(r"prefers-color-scheme: dark\) \{\s*:root \{(.*?)\}", css, re.S)
    assert light is not None
    assert dark is not None
    found = {}
    for name, block in (("light", light.group(1)), ("dark", dark.group(1))):
        found[name] = dict(re.findall(r"--([a-z0-9-]+):\s*(#[0-9a-fA-F]{6})", block))
    return found


def contrast(one: str, two: str) -> float:
    """WCAG 2 contrast ratio of two #rrggbb colours."""

    def luminance(colour: str) -> float:
        channels = [int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
        linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
        return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]

    high, low = sorted((luminance(one), luminance(two)), reverse=True)
    return (high + 0.05) / (low + 0.05)


#: Text colour → the backgrounds it is drawn on.
TEXT_ON = {
    "text": ["bg", "surface", "surface-2"],
    "muted": ["bg", "surface", "surface-2"],
    "accent": ["surface", "surface-2"],
    "accent-text": ["accent"],
    "up": ["surface"],
    "down": ["surface", "bg"],
    "hot": ["hot-bg", "surface"],
    "warm": ["warm-bg", "surface"],
    "cold": ["cold-bg", "surface"],
    "ask": ["ask-bg"],
    "ok": ["ok-bg", "surface"],
}


def test_text_contrast_meets_wcag_aa_in_both_themes() -> None:
    themes = theme_colours((STATIC_DIR / "app.css").read_text())
    for theme, colours in themes.items():
        assert set(TEXT_ON) <= set(colours), (theme, sorted(colours))
        for text, backgrounds in TEXT_ON.items():
            for background in backgrounds:
                ratio = contrast(colours[text], colours[background])
                assert ratio >= 4.5, f"{theme}: --{text} on --{background} is {ratio:.2f}:1"
