#!/usr/bin/env python3
"""The dashboard in a real browser (Debian's Chromium, driven by Playwright), against a running api
and a worker: what an operator sees and does, through the page's stable hooks only.

    dashboard.py URL [--token T] [--kind gate] [--input JSON] [--screenshot PATH]

`--kind` must run until cancelled (the tests' probe kind `gate`; against the built-in kinds,
`--kind sleep --input '{"duration": "600s"}'`). With `--token`, the api is taken to have
authentication on: the page must ask for a token first, and the script enters this one. Jobs are
submitted over HTTP by the script, with the same token. One line per check; the last line says
"all passed", and the exit status is non-zero on the first failure.
"""

import argparse
import json
import sys
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request

from playwright.sync_api import expect, sync_playwright

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# The contract: a change shows within 2 s without reloading.
LIVE_MS = 2000
# A worker's part (starting a job, stopping it after a cancel) gets longer.
WORKER_MS = 15000


class Api:
    """The REST surface over plain HTTP, for setting the scene and checking what the page shows."""

    def __init__(self, base, token):
        self.base = base.rstrip("/")
        self.token = token

    def call(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"{self.base}/v1/{path}", data=data, method=method)
        req.add_header("Content-Type", "application/json")
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(req, timeout=20) as res:
                return res.status, json.loads(res.read() or b"{}")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"{}")

    def ok(self, method, path, body=None):
        status, answer = self.call(method, path, body)
        if status != 200:
            raise AssertionError(f"{method} {path}: {status} {answer}")
        return answer

    def submit(self, kind, job_input, parent=""):
        path = f"{parent}/jobs" if parent else "jobs"
        return self.ok("POST", path, {"kind": kind, "input": job_input})["name"]

    def state(self, name):
        return self.ok("GET", name)["metadata"]["state"]

    def running(self, name):
        """Waits (through short :wait calls) until `name` is RUNNING."""
        until = time.monotonic() + WORKER_MS / 1000
        while True:
            op = self.ok("POST", f"{name}:wait", {"timeout": "0.1s"})
            if op["metadata"]["state"] == "RUNNING":
                return
            if op.get("done") or time.monotonic() > until:
                raise AssertionError(f"{name} not running: {op}")

    def names(self, collection):
        """Every operation name of `collection`, all pages."""
        names, token = [], ""
        while True:
            q = "pageSize=1000" + (f"&pageToken={urllib.parse.quote(token)}" if token else "")
            page = self.ok("GET", f"{collection}?{q}")
            names += [op["name"] for op in page.get("operations", [])]
            token = page.get("nextPageToken")
            if not token:
                return names


def say(line):
    print(line, flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("url", help="the api's HTTP address, e.g. http://127.0.0.1:8080")
    ap.add_argument("--token", help="a bearer token: the api has authentication on")
    ap.add_argument("--kind", default="gate", help="a kind that runs until cancelled")
    ap.add_argument("--input", default="{}", help="its input, JSON")
    ap.add_argument("--screenshot", help="save a screenshot of the page here (PNG)")
    args = ap.parse_args()
    base = args.url.rstrip("/")
    api = Api(base, args.token)
    kind, job_input = args.kind, json.loads(args.input)
    origin = urllib.parse.urlsplit(base)

    started = time.monotonic()
    checks = []

    def check(label, since=None):
        took = f" ({time.monotonic() - since:.2f}s)" if since is not None else ""
        checks.append(label)
        say(f"ok {len(checks):2} {label}{took}")

    # A job running before the page is opened.
    first = api.submit(kind, job_input)
    api.running(first)

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        context = browser.new_context(viewport={"width": 1280, "height": 820})
        page = context.new_page()
        requests, problems, unauthorized = [], [], []
        context.on("request", lambda r: requests.append(r))
        page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
        # A CSP violation shows as a console error ("Refused to load …").
        page.on(
            "console",
            lambda m: problems.append(f"console: {m.text}")
            if m.type == "error" and "Failed to load resource" not in m.text
            else None,
        )
        page.on("dialog", lambda d: d.accept())
        page.on("response", lambda r: unauthorized.append(r.url) if r.status == 401 else None)

        def row(name):
            return page.locator(f'tr[data-operation="{name}"]')

        def state_of(name):
            return row(name).locator('[data-field="state"]')

        try:
            page.goto(base + "/")
            t = time.monotonic()
            if args.token:
                prompt = page.locator('[data-control="token"]')
                expect(prompt).to_be_visible(timeout=LIVE_MS)
                expect(page.locator("tr[data-operation]")).to_have_count(0)
                assert unauthorized, "the token prompt appeared without a 401"
                check("auth on: the page asks for a token (after a 401), shows no operations", t)
                prompt.fill(args.token)
                signed_in_at = len(requests)
                t = time.monotonic()
                page.locator('[data-action="sign-in"]').click()
                expect(row(first)).to_be_visible(timeout=LIVE_MS)
                check("after the token is entered, the list shows", t)
                stored = page.evaluate("sessionStorage.getItem('lro.token')")
                assert stored == args.token, f"token in sessionStorage: {stored!r}"
                check("the token is kept in sessionStorage")

            # 1. The running job, with its state and progress.
            expect(state_of(first)).to_have_text("RUNNING", timeout=LIVE_MS)
            percent = row(first).locator('[data-field="progress"]').inner_text()
            assert percent.isdigit() and 0 <= int(percent) <= 100, f"progress {percent!r}"
            check(f"a running job shows RUNNING, progress {percent}%", t)

            # 2. Its cancel button cancels it; the page shows the end without a reload.
            t = time.monotonic()
            row(first).locator('[data-action="cancel"]').click()
            expect(state_of(first)).to_have_text("CANCELLED", timeout=WORKER_MS)
            assert api.state(first) == "CANCELLED"
            check("its cancel button makes it CANCELLED, without reload", t)

            # 3. A job submitted now appears by itself, and runs.
            t = time.monotonic()
            later = api.submit(kind, job_input)
            expect(row(later)).to_be_visible(timeout=LIVE_MS)
            check("a job submitted after the page loaded appears by itself", t)
            api.running(later)
            expect(state_of(later)).to_have_text("RUNNING", timeout=LIVE_MS)

            # 4. Two selected (by click and by keyboard), cancelled together.
            pair = [api.submit(kind, job_input) for _ in range(2)]
            for name in pair:
                api.running(name)
                expect(state_of(name)).to_have_text("RUNNING", timeout=LIVE_MS)
            row(pair[0]).locator('[data-action="select"]').check()
            box = row(pair[1]).locator('[data-action="select"]')
            box.focus()
            page.keyboard.press("Space")
            expect(box).to_be_checked()
            expect(page.locator('[data-field="selected-count"]')).to_have_text("2")
            t = time.monotonic()
            page.locator('[data-action="cancel-selected"]').click()
            for name in pair:
                expect(state_of(name)).to_have_text("CANCELLED", timeout=WORKER_MS)
            assert api.state(later) == "RUNNING", "an unselected job was cancelled"
            expect(state_of(later)).to_have_text("RUNNING")
            expect(page.locator('[data-action="cancel-selected"]')).to_be_disabled()
            check("two selected (click, keyboard) cancel together; the others run on", t)

            # 5. The filter narrows the list (the list filter syntax, sent as `filter`).
            flt = page.locator('[data-control="filter"]')
            t = time.monotonic()
            flt.fill("metadata.state=RUNNING")
            flt.press("Enter")
            expect(row(first)).to_have_count(0, timeout=LIVE_MS)
            expect(row(later)).to_be_visible()
            states = page.locator('tr[data-operation] [data-field="state"]').all_inner_texts()
            assert states and set(states) == {"RUNNING"}, states
            flt.fill("metadata.state=CANCELLED")
            flt.press("Enter")
            expect(row(later)).to_have_count(0, timeout=LIVE_MS)
            for name in [first, *pair]:
                expect(row(name)).to_be_visible()
            check("the filter input narrows the list", t)
            bad = "metadata.state=NOPE"
            _, refusal = api.call("GET", f"operations?filter={urllib.parse.quote(bad)}")
            flt.fill(bad)
            flt.press("Enter")
            expect(page.get_by_role("alert")).to_contain_text(refusal["error"]["message"], timeout=LIVE_MS)
            check("a refused filter shows the api's error.message")
            flt.fill("")
            flt.press("Enter")
            expect(row(later)).to_be_visible(timeout=LIVE_MS)
            expect(page.get_by_role("alert")).to_be_hidden()

            # 6. The parent input: another parent's operations, then the top level again.
            inner = api.submit(kind, job_input, parent="projects/dash")
            par = page.locator('[data-control="parent"]')
            t = time.monotonic()
            par.fill("projects/dash")
            par.press("Enter")
            expect(row(inner)).to_be_visible(timeout=LIVE_MS)
            expect(row(first)).to_have_count(0)
            par.fill("")
            par.press("Enter")
            expect(row(first)).to_be_visible(timeout=LIVE_MS)
            expect(row(inner)).to_have_count(0)
            check("the parent input shows that parent's operations; empty: the top level's", t)

            # 7. One operation's details: metadata, its error, the JSON.
            row(first).locator('[data-action="details"]').click()
            detail = page.locator("#detail")
            expect(detail).to_be_visible()
            expect(detail.locator('[data-field="outcome"]')).to_contain_text("Error 1", timeout=LIVE_MS)
            shown = json.loads(detail.locator('[data-field="json"]').inner_text())
            assert shown == api.ok("GET", first), shown
            check("a click shows the operation: metadata, error, its exact JSON")
            page.keyboard.press("Escape")
            expect(detail).to_be_hidden()

            # A refused cancel (a kind registered as not cancellable) shows the api's message,
            # and it stays while the page goes on updating.
            stubborn = api.submit("uninterruptible", {"duration": "3s", "steps": 3})
            api.running(stubborn)
            _, refusal = api.call("POST", f"{stubborn}:cancel", {})
            expect(row(stubborn)).to_be_visible(timeout=LIVE_MS)
            row(stubborn).locator('[data-action="cancel"]').click()
            alert = page.get_by_role("alert")
            expect(alert).to_contain_text(refusal["error"]["message"], timeout=LIVE_MS)
            page.wait_for_timeout(1500)  # more than one poll: the message must still be there
            expect(alert).to_contain_text(refusal["error"]["message"])
            page.locator('[data-action="dismiss-error"]').click()
            expect(alert).to_be_hidden()
            check(f"a refused cancel shows the api's message ({refusal['error']['status']}) until dismissed")

            # 8. Delete.
            gone = api.submit("noop", {})
            expect(row(gone)).to_be_visible(timeout=LIVE_MS)
            row(gone).locator('[data-action="delete"]').click()
            expect(row(gone)).to_have_count(0, timeout=LIVE_MS)
            assert api.call("GET", gone)[0] == 404
            check("delete removes an operation")

            # 9. Paging by nextPageToken.
            for _ in range(11):
                api.submit("noop", {})
            page.locator('[data-control="page-size"]').select_option("10")
            rows = page.locator("tr[data-operation]")
            expect(rows).to_have_count(10, timeout=LIVE_MS)
            # The page number is written with the rows it belongs to.
            pages = [rows.evaluate_all("rs => rs.map(r => r.dataset.operation)")]
            nxt = page.locator('[data-action="next-page"]')
            while nxt.is_enabled():
                nxt.click()
                expect(page.locator('[data-field="page"]')).to_have_text(f"Page {len(pages) + 1}")
                pages.append(rows.evaluate_all("rs => rs.map(r => r.dataset.operation)"))
            everything = api.names("operations")
            seen = [n for p in pages for n in p]
            assert seen == everything, (pages, everything)
            one = pages[0]
            page.locator('[data-action="first-page"]').click()
            expect(row(one[0])).to_be_visible(timeout=LIVE_MS)
            page.locator('[data-control="page-size"]').select_option("25")
            check(f"pages of 10 by nextPageToken: {' + '.join(str(len(p)) for p in pages)} = every operation, in order")

            # The picture for the docs: a mix of states, one operation open beside the list.
            expect(rows).to_have_count(len(everything), timeout=LIVE_MS)
            page.set_viewport_size({"width": 1440, "height": 860})
            row(later).locator('[data-action="details"]').click()
            expect(page.locator('[data-field="json"]')).to_contain_text("RUNNING")
            if args.screenshot:
                page.screenshot(path=args.screenshot)
                check(f"screenshot saved: {args.screenshot}")
            page.keyboard.press("Escape")
            expect(page.locator("#detail")).to_be_hidden()

            # 10. A phone: no sideways scrolling, every control still there and usable.
            page.set_viewport_size({"width": 390, "height": 844})
            wide = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            assert wide <= 0, f"the page is {wide}px wider than a phone"
            button = row(later).locator('[data-action="cancel"]')
            button.scroll_into_view_if_needed()
            box_ = button.bounding_box()
            assert box_ and box_["x"] >= 0 and box_["x"] + box_["width"] <= 390, box_
            t = time.monotonic()
            button.click()
            expect(state_of(later)).to_have_text("CANCELLED", timeout=WORKER_MS)
            check("on a phone's width: no sideways scroll, cancel works", t)

            # 11. Everything stayed on this page and on the api's host.
            loads = [r.url for r in requests if r.resource_type == "document"]
            assert len(loads) == 1, f"the page was loaded again: {loads}"
            foreign = [
                r.url
                for r in requests
                if urllib.parse.urlsplit(r.url)[:2] != origin[:2]
            ]
            assert not foreign, f"requests to other hosts: {foreign}"
            calls = [r for r in requests if urllib.parse.urlsplit(r.url).path.startswith("/v1/")]
            check(
                f"{len(requests)} requests ({len(calls)} to /v1), all to {origin.netloc}; one page load"
            )
            if args.token:
                after = [r for r in requests[signed_in_at:] if "/v1/" in r.url]
                bare = [r.url for r in after if r.headers.get("authorization") != f"Bearer {args.token}"]
                assert after and not bare, f"calls without the token: {bare}"
                check("every call after sign-in carries Authorization: Bearer <the token>")
            assert not problems, problems
            check("no script errors, no Content-Security-Policy violations")

            # 12. The address keeps the view: a link with a filter opens that view in a new tab
            # (which, with authentication on, asks for its own token: sessionStorage is per tab).
            tab = context.new_page()
            flt_ = "metadata.state=CANCELLED"
            tab.goto(f"{base}/#filter={urllib.parse.quote(flt_)}")
            if args.token:
                tab.locator('[data-control="token"]').fill(args.token)
                tab.locator('[data-action="sign-in"]').click()
            expect(tab.locator('[data-control="filter"]')).to_have_value(flt_)
            expect(tab.locator(f'tr[data-operation="{pair[0]}"]')).to_be_visible(timeout=LIVE_MS)
            shown = tab.locator('tr[data-operation] [data-field="state"]').all_inner_texts()
            assert set(shown) == {"CANCELLED"}, shown
            check("a link with #filter=… opens that view" + (" (after its own token)" if args.token else ""))
        except Exception:
            if args.screenshot:
                page.screenshot(path=args.screenshot + ".failed.png", full_page=True)
            raise
        finally:
            browser.close()
    say(f"{len(checks)} checks in {time.monotonic() - started:.1f}s: all passed")


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        traceback.print_exc()
        say(f"FAILED: {e}")
        sys.exit(1)
