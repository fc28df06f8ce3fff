"""The course website (`make site`): it builds from the committed notebooks, works offline, and renders in a browser.

The first tests build the site into a temporary folder with the same `make site` the README names
and read the HTML: a page per chapter and the glossary, no script or stylesheet from another host,
MathJax and the search index served from the site itself, a download link per chapter.

The browser test opens the built site in headless Chromium (Debian's `chromium` package), driven
through the Chrome DevTools protocol with `websocket-client`, from a local http.server. On every
chapter page it checks that nothing was logged as an error (scripts, failed loads), that MathJax
typeset the maths (no raw `$$` or `\\[` left in the text), that every image loaded; then that the
search page finds a term; and it saves screenshots of three pages (maths, figures, Chinese) in
the test's temporary folder, printing where. Without Chromium it is skipped, saying so.
"""

import base64
import functools
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHAPTERS = sorted(p.stem for p in (ROOT / "chapters").glob("*.ipynb"))
SCREENSHOTS = ["05_diffusion", "07c_guidance", "09_interview"]  # maths, figures, and the bilingual chapter


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    "Build the site with `make site` into a temporary folder (about 15 s; it installs the `site` extra if missing)."
    work = tmp_path_factory.mktemp("site")
    cmd = ["make", "--no-print-directory", "-C", str(ROOT), "site", f"SITE_WORK={work}"]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, f"make site failed:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    return work / "html"


def test_site_has_every_chapter_and_the_glossary(site):
    for stem in CHAPTERS:
        page = site / "chapters" / f"{stem}.html"
        assert page.exists(), f"no page for {stem}"
        html = page.read_text(encoding="utf-8")
        assert f"_sources/chapters/{stem}.ipynb" in html, f"{stem}: no download link to its notebook"
        assert (site / "_sources" / "chapters" / f"{stem}.ipynb").exists()
    index = (site / "index.html").read_text(encoding="utf-8")
    assert all(f'href="chapters/{stem}.html"' in index for stem in CHAPTERS), "the sidebar misses a chapter"
    assert (site / "assets" / "glossary.html").exists() and 'href="assets/glossary.html"' in index
    # chapter 09's link to the glossary is a working cross-link, and its Chinese text survives the build
    ch09 = (site / "chapters" / "09_interview.html").read_text(encoding="utf-8")
    assert "../assets/glossary.html" in ch09
    assert re.search(r"[\u4e00-\u9fff]{4}", ch09), "chapter 09's Chinese text is missing"


def test_site_serves_its_own_assets(site):
    # Offline: no page loads a script or a stylesheet from another host; MathJax and search are local.
    remote = re.compile(r"<(?:script|link|img|iframe)\b[^>]*\b(?:src|href)=\"(?:https?:)?//[^\"]*\"")
    for page in site.rglob("*.html"):
        found = remote.findall(page.read_text(encoding="utf-8"))
        assert not found, f"{page.relative_to(site)} loads from another host: {found[:3]}"
    for css in (site / "_static").rglob("*.css"):
        assert not re.search(r"@import\s+url\(['\"]?(https?:)?//", css.read_text(errors="ignore")), css.name
    assert (site / "_static" / "mathjax" / "tex-chtml.js").exists()
    assert (site / "searchindex.js").exists() and (site / "search.html").exists()
    html = (site / "chapters" / "05_diffusion.html").read_text(encoding="utf-8")
    assert "_static/mathjax/tex-chtml.js" in html


# --- the browser -------------------------------------------------------------------------------

def _chromium():
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        if path := shutil.which(name):
            return path
    return None


class Browser:
    "A headless Chromium driven through the DevTools protocol: one page, its events collected."

    def __init__(self, binary, profile):
        import websocket  # websocket-client: a dependency of jupyter_server, and of the `site` extra

        self.proc = subprocess.Popen(
            [binary, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--no-first-run", "--no-default-browser-check", "--disable-extensions", "--hide-scrollbars",
             "--remote-debugging-port=0", f"--user-data-dir={profile}", "--window-size=1280,1000", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        port = None
        deadline = time.time() + 60
        while port is None and time.time() < deadline:
            line = self.proc.stderr.readline()
            if m := re.search(r"DevTools listening on ws://[^:]+:(\d+)/", line):
                port = int(m.group(1))
            elif not line and self.proc.poll() is not None:
                raise RuntimeError("chromium exited before it listened")
        threading.Thread(target=self.proc.stderr.read, daemon=True).start()  # keep its pipe drained
        targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10))
        page = next(t for t in targets if t["type"] == "page")
        self.ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=60, suppress_origin=True)
        self.next_id, self.events = 0, []
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.send(f"{domain}.enable")
        self.send("Emulation.setDeviceMetricsOverride", width=1280, height=1000, deviceScaleFactor=1, mobile=False)

    def send(self, method, **params):
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self.next_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self.events.append(msg)

    def wait_for(self, method, timeout=60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            for i, e in enumerate(self.events):
                if e.get("method") == method:
                    return self.events.pop(i)
            self.ws.settimeout(max(0.1, deadline - time.time()))
            self.events.append(json.loads(self.ws.recv()))
        raise TimeoutError(method)

    def js(self, expression, await_promise=False):
        r = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=await_promise)
        if "exceptionDetails" in r:
            raise RuntimeError(f"{expression[:60]}: {r['exceptionDetails']}")
        return r["result"].get("value")

    def open(self, url):
        self.events.clear()
        self.send("Page.navigate", url=url)
        self.wait_for("Page.loadEventFired")
        # MathJax typesets after the load event; wait for it where the page has it
        self.js("window.MathJax && MathJax.startup && MathJax.startup.promise ? MathJax.startup.promise.then(() => 1)"
                " : 0", await_promise=True)

    def errors(self):
        out = []
        for e in self.events:
            m, p = e.get("method"), e.get("params", {})
            if m == "Runtime.exceptionThrown":
                details = p["exceptionDetails"]
                out.append(details.get("exception", {}).get("description") or details["text"])
            elif m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                out.append(" ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", [])))
            elif m == "Log.entryAdded" and p["entry"]["level"] == "error":
                out.append(f"{p['entry']['text']} {p['entry'].get('url', '')}")
            elif m == "Network.loadingFailed" and not p.get("canceled"):
                out.append(f"failed load: {p.get('errorText')}")
        return out

    def screenshot(self, path):
        path.write_bytes(base64.b64decode(self.send("Page.captureScreenshot", format="png")["data"]))

    def close(self):
        try:
            self.ws.close()
        finally:
            self.proc.terminate()
            self.proc.wait(timeout=20)


@pytest.fixture(scope="module")
def browser(site, tmp_path_factory):
    binary = _chromium()
    if binary is None:
        pytest.skip("Chromium is not installed (Debian: apt-get install chromium): "
                    "the browser test of the site is skipped")
    pytest.importorskip("websocket", reason="websocket-client is missing: pip install -e '.[site]'")
    handler = functools.partial(_QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    b = Browser(binary, tmp_path_factory.mktemp("chromium-profile"))
    b.base = f"http://127.0.0.1:{server.server_address[1]}/"
    yield b
    b.close()
    server.shutdown()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


PAGE_STATE = """(() => {
  const text = document.querySelector('main, article, body').innerText;
  const math = document.querySelectorAll('.math');
  return {
    title: document.title,
    rawMath: /\\$\\$|\\\\\\[|\\\\begin\\{/.test(text),
    untypeset: Array.from(math).filter(m => !m.querySelector('mjx-container')).length,
    typeset: document.querySelectorAll('mjx-container').length,
    mathjaxErrors: document.querySelectorAll('mjx-merror').length,
    images: document.images.length,
    broken: Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src),
    download: !!document.querySelector('a[href$=".ipynb"]'),
    sidebar: document.querySelectorAll('nav.bd-links a.reference').length,
  };
})()"""


# For a screenshot: scroll to the first typeset equation of the chapter that has a figure within 1400 px
# below it, so that one 1280 x 1600 view shows both; else to the first figure.
SCROLL_TO_MATHS_AND_FIGURE = """(() => {
  const top = e => e.getBoundingClientRect().top + window.scrollY;
  const maths = Array.from(document.querySelectorAll('article mjx-container')).map(top);
  const figures = Array.from(document.querySelectorAll('article img')).map(top);
  let y = figures.length ? figures[0] - 200 : 0;
  for (const m of maths) { if (figures.some(f => f > m && f - m < 1400)) { y = m - 150; break; } }
  window.scrollTo(0, Math.max(0, y));
})()"""


def test_every_chapter_renders_in_a_browser(browser, tmp_path):
    problems, typeset = [], 0
    for stem in [*CHAPTERS, None]:
        url = browser.base + (f"chapters/{stem}.html" if stem else "assets/glossary.html")
        browser.open(url)
        state, errors = browser.js(PAGE_STATE), browser.errors()
        name = stem or "glossary"
        typeset += state["typeset"]
        if errors:
            problems.append(f"{name}: console errors {errors[:3]}")
        if state["rawMath"] or state["untypeset"] or state["mathjaxErrors"]:
            problems.append(f"{name}: maths not rendered ({state})")
        if state["broken"]:
            problems.append(f"{name}: images that did not load {state['broken'][:3]}")
        if stem and not state["download"]:
            problems.append(f"{name}: no download link")
        if state["sidebar"] < len(CHAPTERS):
            problems.append(f"{name}: the sidebar lists {state['sidebar']} pages")
        if stem in SCREENSHOTS:
            browser.send("Emulation.setDeviceMetricsOverride", width=1280, height=1600, deviceScaleFactor=1,
                         mobile=False)
            browser.js(SCROLL_TO_MATHS_AND_FIGURE)
            time.sleep(0.3)
            browser.screenshot(tmp_path / f"{stem}.png")
            browser.send("Emulation.setDeviceMetricsOverride", width=1280, height=1000, deviceScaleFactor=1,
                         mobile=False)
    assert not problems, "\n".join(problems)
    assert typeset > 50, f"only {typeset} equations typeset on the whole site"
    shots = sorted(tmp_path.glob("*.png"))
    assert len(shots) == 3 and all(p.stat().st_size > 20_000 for p in shots), shots
    print(f"screenshots: {', '.join(map(str, shots))}", file=sys.stderr)
    keep = os.environ.get("MINISD_SITE_SCREENSHOTS")  # e.g. a CI artefact folder
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        for p in shots:
            shutil.copy(p, Path(keep) / p.name)


def test_search_finds_a_term(browser):
    browser.open(browser.base + "search.html?q=scheduler")
    deadline = time.time() + 30
    hits = []
    while time.time() < deadline and not hits:
        hits = browser.js("Array.from(document.querySelectorAll('#search-results ul.search li a'))"
                          ".map(a => a.getAttribute('href'))") or []
        time.sleep(0.2)
    assert any("chapters/05_diffusion" in h or "chapters/07" in h for h in hits), hits
    assert not browser.errors(), browser.errors()
