"""Command center in Chromium: time to first render of the lead queue, and live row update
latency while leads are scored at a steady rate.

Run: `uv run python benchmarks/dashboard.py [--leads 10000] [--rate 50] [--seconds 20]
[--loads 10]`. Starts `leadscore serve` (one worker, embedded default: SQLite, built-in model)
on loopback, scores `--leads` synthetic leads through /batch-score, then opens the page in
Debian's headless Chromium with a session already in sessionStorage (as after sign-in):

- first render: navigation start → the frame that shows the queue's first rows has been
  rendered (a message posted from that frame's requestAnimationFrame callback arrives after
  its paint), `--loads` times in a fresh browser context (empty cache) and as many reloads in
  a warm one;
- live update: the queue sorted by "Latest scored" (every score moves its row to the top)
  while leads are scored at `--rate` per second for `--seconds`, half new leads, half new
  scores of seeded leads with one more interaction; latency = the frame that shows the row
  with that lead's new score has been rendered (the same after-paint probe) − the moment its
  HTTP response arrived in the scoring process (both wall clock on this machine). Also
  printed: the server's event timestamp → the message reaching the page, that → the row
  painted, and the page's script time per frame.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import Browser, BrowserContext, sync_playwright

sys.path.insert(0, str(Path(__file__).resolve().parent))
from api_load import Server, base_env, cli
from leadscore.engine.io import frame_to_leads
from leadscore.engine.synthetic import generate

# The page's own marks (queue.js), ms since navigation start.
MARKS = """Object.fromEntries(performance.getEntriesByType("mark")
    .filter((m) => m.name.startsWith("queue:")).map((m) => [m.name, m.startTime]))"""

# "Painted": a message posted from the frame's callbacks is delivered once that frame has
# been rendered (rAF + MessageChannel, the usual after-paint probe).
FIRST_ROWS = """
(() => {
  const painted = new MessageChannel();
  painted.port1.onmessage = () => { window.firstRowsMs = performance.now(); };
  const poll = () => {
    if (document.querySelector("#queue-rows tr")) painted.port2.postMessage(null);
    else requestAnimationFrame(poll);
  };
  requestAnimationFrame(poll);
})();
"""

# Every row change (a new row, or a row given a score) stamped once it is painted; every
# `lead_scored` message stamped when it reaches the page (with the server's own timestamp).
ROW_CHANGES = """
window.rowChanges = [];
window.arrivals = [];
const NativeSocket = window.WebSocket;
window.WebSocket = class extends NativeSocket {
  constructor(...args) {
    super(...args);
    this.addEventListener("message", (message) => {
      const at = performance.timeOrigin + performance.now();
      if (!message.data.includes('"lead_scored"')) return;
      const event = JSON.parse(message.data);
      const data = event.data;
      window.arrivals.push([data.lead_id, data.ml_score, at, Date.parse(event.timestamp)]);
    });
  }
};
document.addEventListener("DOMContentLoaded", () => {
  const body = document.getElementById("queue-rows");
  new MutationObserver((records) => {
    const rows = new Set();
    for (const record of records) {
      if (record.type === "attributes") rows.add(record.target);
      for (const node of record.addedNodes) if (node.dataset) rows.add(node);
    }
    // This runs right after the page's frame callback changed the DOM; the message arrives
    // once this frame, which shows the changes, has been rendered.
    const shown = [...rows].map((tr) => [tr.dataset.id, Number(tr.dataset.score)]);
    const painted = new MessageChannel();
    painted.port1.onmessage = () => {
      const at = performance.timeOrigin + performance.now();
      for (const [id, score] of shown) window.rowChanges.push([id, score, at]);
    };
    painted.port2.postMessage(null);
  }).observe(body, { childList: true, subtree: true, attributes: true,
                     attributeFilter: ["data-score"] });
});
"""


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def summary(values: list[float]) -> str:
    return (
        f"p50 {statistics.median(values):7.1f} ms   p95 {pct(values, 95):7.1f} ms   "
        f"max {max(values):7.1f} ms   (n={len(values)})"
    )


def synthetic_leads(n: int, seed: int, prefix: str) -> list[dict[str, Any]]:
    now = datetime.now(UTC)
    frame = generate(n, seed=seed, start=now - timedelta(days=30), days=30).drop("as_of")
    leads = [lead.model_dump(mode="json", exclude_none=True) for lead in frame_to_leads(frame)]
    for i, lead in enumerate(leads):
        lead["lead_id"] = f"{prefix}_{i:06d}"
    return leads


def seed(url: str, key: str, leads: list[dict[str, Any]]) -> float:
    started = time.perf_counter()
    with httpx.Client(base_url=url, headers={"X-API-Key": key}, timeout=120) as http:
        for start in range(0, len(leads), 100):
            response = http.post(
                "/api/v1/ml/batch-score", json={"leads": leads[start : start + 100]}
            )
            response.raise_for_status()
        # The list waits for the score writer: it answers once the scores are stored.
        while http.get("/api/v1/ml/leads", params={"limit": 1}).status_code == 503:
            time.sleep(0.5)
    return time.perf_counter() - started


def session_script(url: str, key: str) -> str:
    """An init script that puts a fresh session in sessionStorage, as signing in does."""
    body = httpx.post(f"{url}/api/v1/auth/token", headers={"X-API-Key": key}).json()
    session = {
        "token": body["access_token"],
        "expiresAt": time.time() * 1000 + body["expires_in"] * 1000,
        "lifetime": body["expires_in"] * 1000,
        "role": body["role"],
        "team": body["team"],
    }
    value = json.dumps(json.dumps(session))
    # Init scripts also run in about:blank, which has no sessionStorage.
    return (
        f"if (location.protocol === 'http:') sessionStorage.setItem('leadscore.session', {value});"
    )


def new_context(browser: Browser, url: str, key: str) -> BrowserContext:
    # bypass_csp: Playwright's wait_for_function evaluates strings, which the page's CSP forbids.
    context = browser.new_context(viewport={"width": 1280, "height": 900}, bypass_csp=True)
    context.add_init_script(session_script(url, key))
    context.add_init_script(FIRST_ROWS)
    # A page error would leave the benchmark waiting: say what it was.
    context.on(
        "console",
        lambda m: print(f"  page console {m.type}: {m.text}") if m.type == "error" else None,
    )
    context.on("weberror", lambda e: print(f"  page error: {e.error}"))
    return context


def first_render(
    browser: Browser, url: str, key: str, loads: int
) -> tuple[list[float], list[float], list[dict[str, float]]]:
    cold: list[float] = []
    warm: list[float] = []
    marks: list[dict[str, float]] = []
    for _ in range(loads):
        context = new_context(browser, url, key)
        page = context.new_page()
        page.goto(f"{url}/dashboard#/queue")
        page.wait_for_function("window.firstRowsMs !== undefined", timeout=30_000)
        cold.append(page.evaluate("window.firstRowsMs"))
        marks.append(page.evaluate(MARKS))
        context.close()
    context = new_context(browser, url, key)
    page = context.new_page()
    page.goto(f"{url}/dashboard#/queue")
    page.wait_for_function("window.firstRowsMs !== undefined", timeout=30_000)
    for _ in range(loads):
        page.reload()
        page.wait_for_function("window.firstRowsMs !== undefined", timeout=30_000)
        warm.append(page.evaluate("window.firstRowsMs"))
    rows = page.locator("#queue-rows tr").count()
    context.close()
    print(f"(the queue's first page: {rows} rows)")
    return cold, warm, marks


async def score_steadily(
    url: str, key: str, new: list[dict[str, Any]], old: list[dict[str, Any]], rate: float
) -> tuple[dict[tuple[str, float], float], int]:
    """Score at `rate` per second, alternating new leads and seeded ones with one more
    interaction; the wall-clock time each response arrived, by (lead_id, score)."""
    answered: dict[tuple[str, float], float] = {}
    failures = 0
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    bodies = []
    for fresh, seen in zip(new, old, strict=False):
        again = json.loads(json.dumps(seen))
        again["lead_data"].setdefault("interaction_history", []).append(
            {"timestamp": now, "type": "email_response", "response_time_hours": 0.3,
             "message_length": 240, "questions_asked": 2}
        )  # fmt: skip
        bodies += [fresh, again]

    async with httpx.AsyncClient(base_url=url, headers={"X-API-Key": key}, timeout=30) as http:

        async def one(body: dict[str, Any]) -> None:
            nonlocal failures
            response = await http.post("/api/v1/ml/score", json=body)
            arrived = time.time() * 1000
            if response.status_code != 200:
                failures += 1
                return
            result = response.json()
            answered[(result["lead_id"], result["ml_score"])] = arrived

        start = time.perf_counter()
        tasks = []
        for i, body in enumerate(bodies):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(body)))
        await asyncio.gather(*tasks)
    return answered, failures


def run_scorer(
    url: str, key: str, new: list[dict[str, Any]], old: list[dict[str, Any]], rate: float
) -> tuple[dict[tuple[str, float], float], int]:
    return asyncio.run(score_steadily(url, key, new, old, rate))


def live_updates(
    browser: Browser, url: str, key: str, seeded: list[dict[str, Any]], rate: float, seconds: int
) -> None:
    context = new_context(browser, url, key)
    context.add_init_script(ROW_CHANGES)
    page = context.new_page()
    page.goto(f"{url}/dashboard#/queue")
    page.wait_for_function("window.firstRowsMs !== undefined", timeout=30_000)
    page.get_by_label("Sort by").select_option("scored_at")
    page.wait_for_timeout(1500)
    count = int(rate * seconds) // 2
    new = synthetic_leads(count, seed=99, prefix="live")
    old = seeded[:count]
    # Playwright's sync API holds this thread's event loop and the GIL often: the scorer runs
    # in its own process, so that response times are taken when the responses arrive.
    with ProcessPoolExecutor(1) as pool:
        scoring = pool.submit(run_scorer, url, key, new, old, rate)
        while not scoring.done():
            page.wait_for_timeout(100)  # keeps the page's events flowing meanwhile
        answered, failures = scoring.result()
    page.wait_for_timeout(2000)  # the last events reach the page
    changes = page.evaluate("window.rowChanges")
    arrivals = {(i, score): (at, sent) for i, score, at, sent in page.evaluate("window.arrivals")}
    work = page.evaluate("performance.getEntriesByName('queue:live').map(m => m.duration)")
    context.close()
    seen: dict[tuple[str, float], float] = {}
    for lead_id, shown_score, at in changes:
        seen.setdefault((lead_id, shown_score), at)
    shown = {k: t for k, t in answered.items() if k in seen}
    print(f"live update at {rate:g} scores/s for {seconds} s (queue sorted by latest scored):")
    both = [k for k in shown if k in arrivals]
    rows = {
        "HTTP response → row shows the new score": [seen[k] - t for k, t in shown.items()],
        "event published → message in the page": [arrivals[k][0] - arrivals[k][1] for k in both],
        "message in the page → row painted": [seen[k] - arrivals[k][0] for k in both],
    }
    for label, values in rows.items():
        print(f"  {label:<42} {summary(values)}")
    script = "the page's script time per frame"
    print(f"  {script:<42} {summary(work)}")
    missing = len(answered) - len(shown)
    print(
        f"  scores not seen on the page: {missing} of {len(answered)} ({len(arrivals)} events "
        f"reached it); failed requests: {failures}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--loads", type=int, default=10)
    args = parser.parse_args()
    executable = shutil.which("chromium")
    if executable is None:
        raise SystemExit("needs Debian's chromium (apt-get install chromium)")
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        env = base_env(home) | {"OMP_NUM_THREADS": "2"}
        key = cli(env, "keys", "create", "--team", "bench", "--role", "admin")
        server = Server(env, workers=1)
        try:
            leads = synthetic_leads(args.leads, seed=7, prefix="bench")
            took = seed(server.url, key, leads)
            print(f"seeded {len(leads):,} scored leads in {took:.1f} s")
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=executable, headless=True)
                cold, warm, marks = first_render(browser, server.url, key, args.loads)
                print("first render of the queue (navigation start → first rows painted):")
                print(f"  fresh context (empty cache)   {summary(cold)}")
                print(f"  reload (warm cache)           {summary(warm)}")
                print("  fresh context, where the time went:")
                steps = {
                    "page and modules loaded, list requested": [m["queue:request"] for m in marks],
                    "list request → response": [
                        m["queue:response"] - m["queue:request"] for m in marks
                    ],
                    "response → rows in the DOM": [
                        m["queue:rendered"] - m["queue:response"] for m in marks
                    ],
                    "rows in the DOM → painted": [
                        total - m["queue:rendered"] for total, m in zip(cold, marks, strict=True)
                    ],
                }
                for label, values in steps.items():
                    print(f"    {label:<40} {summary(values)}")
                live_updates(browser, server.url, key, leads, args.rate, args.seconds)
                browser.close()
        finally:
            server.stop()


if __name__ == "__main__":
    main()
