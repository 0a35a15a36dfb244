"""The dashboard page itself: its script refers only to elements the page has, and, run headless
(node with a minimal DOM, ``fetch`` against the real served process), it renders a provisioned
device with its heartbeat metrics and meter readings, opens the device's detail, sends an
md-command through its form and shows the answer, and asks for the token again when the server
refuses it. Skipped where node is not installed (no browser is needed)."""

from __future__ import annotations

import html.parser
import json
import re
import shutil
import subprocess

import pytest

from libarms.testserver.dashboard import load_page
from tests.conftest_testserver import DIST, TIMEOUT, TOKEN, agent_in_push_wait, served  # noqa: F401

NODE = shutil.which("node") or shutil.which("nodejs")


class _Ids(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids, self.classes, self.script = set(), set(), ""
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            assert a["id"] not in self.ids, f"duplicate id {a['id']}"
            self.ids.add(a["id"])
        self.classes.update((a.get("class") or "").split())
        self._in_script = tag == "script"

    def handle_endtag(self, tag):
        self._in_script = False

    def handle_data(self, data):
        if self._in_script:
            self.script += data


def test_page_script_uses_only_elements_the_page_has():
    p = _Ids()
    p.feed(load_page().decode("utf-8"))
    used = set(re.findall(r'\$\("([\w-]+)"\)', p.script))
    assert used and used <= p.ids, used - p.ids
    for cls in re.findall(r'querySelectorAll\("\.([\w-]+)"\)', p.script):
        assert cls in p.classes, cls
    # nothing from the server is parsed as HTML
    assert "innerHTML" not in p.script and "insertAdjacentHTML" not in p.script
    assert "document.write" not in p.script and "eval(" not in p.script


# A DOM just large enough for the page's script: elements made for every id and class in the
# page, text-only content, events invoked by hand. fetch is node's own, against the server.
DOM_SHIM = r"""
const fs = require("fs");
const [htmlPath, base, token, actions] = process.argv.slice(2);
const page = fs.readFileSync(htmlPath, "utf8");
const script = page.match(/<script>([\s\S]*?)<\/script>/)[1];
const errors = [];
process.on("unhandledRejection", e => errors.push("unhandled: " + (e && e.stack || e)));

class ClassList {
  constructor() { this.set = new Set(); }
  add(c) { this.set.add(c); } remove(c) { this.set.delete(c); } contains(c) { return this.set.has(c); }
  toggle(c, force) { if (force === undefined) force = !this.set.has(c);
    if (force) this.set.add(c); else this.set.delete(c); return force; }
}
class FakeNode {
  constructor(tag) { this.tagName = tag; this.children = []; this.parentNode = null; this._text = "";
    this.classList = new ClassList(); this.dataset = {}; this.listeners = {}; this.value = "";
    this.checked = false; this.id = ""; this.isFragment = false; }
  get className() { return [...this.classList.set].join(" "); }
  set className(v) { this.classList.set = new Set(String(v).split(/\s+/).filter(Boolean)); }
  get textContent() { return this._text + this.children.map(c => c.textContent).join(""); }
  set textContent(v) { this.children = []; this._text = String(v); }
  get firstChild() { return this.children[0] || null; }
  appendChild(c) {
    if (c.isFragment) { for (const k of [...c.children]) this.appendChild(k); c.children = []; return c; }
    if (c.parentNode) c.parentNode.removeChild(c);
    c.parentNode = this; this.children.push(c); return c;
  }
  removeChild(c) { const i = this.children.indexOf(c); if (i >= 0) this.children.splice(i, 1);
    c.parentNode = null; return c; }
  replaceChild(n, o) { const i = this.children.indexOf(o); this.children[i] = n; n.parentNode = this;
    o.parentNode = null; if (n.id) ids[n.id] = n; return o; }
  addEventListener(t, f) { (this.listeners[t] = this.listeners[t] || []).push(f); }
  fire(t, ev) { for (const f of this.listeners[t] || []) f(ev || { preventDefault() {} }); }
  focus() {}
}
const root = new FakeNode("body");
const ids = {}, byClass = {};
for (const m of page.matchAll(/<(\w+)([^>]*)>/g)) {
  const attrs = m[2];
  const id = /\sid="([^"]+)"/.exec(attrs), cls = /\sclass="([^"]+)"/.exec(attrs);
  if (!id && !cls) continue;
  const el = new FakeNode(m[1]);
  if (cls) { el.className = cls[1]; for (const c of el.classList.set) (byClass[c] = byClass[c] || []).push(el); }
  const val = /\svalue="([^"]*)"/.exec(attrs); if (val) el.value = val[1];
  el.checked = /\schecked/.test(attrs);
  root.appendChild(el);
  if (id) { el.id = id[1]; ids[id[1]] = el; }
}
const store = new Map();
Object.assign(globalThis, {
  Node: FakeNode,
  document: {
    getElementById: id => ids[id] || null,
    createElement: tag => new FakeNode(tag),
    createTextNode: text => { const n = new FakeNode("#text"); n._text = String(text); return n; },
    createDocumentFragment: () => { const f = new FakeNode("#fragment"); f.isFragment = true; return f; },
    querySelectorAll: sel => byClass[sel.replace(/^\./, "")] || [],
  },
  sessionStorage: { getItem: k => store.has(k) ? store.get(k) : null,
                    setItem: (k, v) => store.set(k, String(v)), removeItem: k => store.delete(k) },
  location: { hash: "#token=" + encodeURIComponent(token), pathname: "/dashboard", search: "" },
  history: { replaceState() { globalThis.location.hash = ""; } },
  setInterval: () => 1, clearInterval: () => {}, confirm: () => true,
});
const realFetch = globalThis.fetch;
globalThis.fetch = (path, opts) => realFetch(base + path, opts);

function until(what, fn, ms) {
  const end = Date.now() + ms;
  return new Promise((resolve, reject) => {
    (function poll() {
      let v; try { v = fn(); } catch (e) { v = false; }
      if (v) return resolve(v);
      if (Date.now() > end) return reject(new Error("timed out waiting for " + what));
      setTimeout(poll, 25);
    })();
  });
}
const text = id => ids[id].textContent;
const hidden = id => ids[id].classList.contains("hidden");
const out = {};
(async () => {
  new Function(script)();
  if (actions === "refused") {
    await until("the login form", () => !hidden("login") && text("login-error"), 10000);
    out.login = text("login-error"); out.appHidden = hidden("app");
    out.tokenKept = store.has("arms-testserver-token");
    return;
  }
  await until("device rows", () => ids["devices"].children.length > 0, 10000);
  await until("server status", () => text("server").includes("rest_url"), 10000);
  // the request log is its own fetch in the same refresh: wait for its rows too
  await until("served requests", () => ids["served"].children.length > 0, 10000);
  out.appHidden = hidden("app"); out.tokenFromFragment = store.get("arms-testserver-token");
  out.fragmentCleared = globalThis.location.hash === "";
  out.rows = ids["devices"].children.map(r => r.children.map(c => c.textContent));
  out.served = ids["served"].children.length;
  out.server = text("server");
  const row = ids["devices"].children.find(r => r.dataset.code === process.env.DIST);
  row.fire("click");
  await until("the detail", () => !hidden("detail") && text("detail-code") === process.env.DIST, 10000);
  await until("the detail's requests", () => text("detail-body").includes("config-solicitation"), 10000);
  out.detail = text("detail-body");
  ids["push-device"].value = process.env.DIST;
  ids["push-method"].value = "md-command"; ids["push-method"].fire("change");
  ids["push-module"].value = "1001"; ids["push-command"].value = "show status";
  ids["push-form"].fire("submit");
  await until("the md-command result", () => /: done result 100/.test(text("push-result")), 20000);
  out.pushResult = text("push-result");
  await until("the push request listed", () => ids["pushes"].children.length > 0, 10000);
  out.pushes = ids["pushes"].children.map(r => r.textContent);
  out.error = text("error");
})().catch(e => errors.push(String(e && e.stack || e))).finally(() => {
  out.errors = errors;
  process.stdout.write(JSON.stringify(out));
  process.exit(0);
});
"""


def _run_page(tmp_path, base: str, token: str, actions: str = "render") -> dict:
    page = tmp_path / "dashboard.html"
    page.write_bytes(load_page())
    shim = tmp_path / "dom_shim.js"
    shim.write_text(DOM_SHIM)
    r = subprocess.run([NODE, str(shim), str(page), base, token, actions], capture_output=True,
                       text=True, timeout=60, env={"DIST": DIST, "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


@pytest.mark.skipif(NODE is None, reason="node is not installed (headless page check)")
def test_page_renders_device_heartbeat_and_readings_and_sends_an_md_command(
        served, agent_in_push_wait, tmp_path):
    r = served.http.post(served.info["collector_url"], timeout=TIMEOUT, json={
        "device": DIST, "readings": [{"key": "p1", "kind": "instant_power_w",
                                      "ts": "2026-11-26T09:00:00+09:00", "value": 321}]})
    assert r.status_code == 200
    served.wait_until("a heartbeat", lambda: served.device()["heartbeat"])
    out = _run_page(tmp_path, served.base, TOKEN)
    assert out["errors"] == [] and out["error"] == ""
    assert out["appHidden"] is False and out["tokenFromFragment"] == TOKEN
    assert out["fragmentCleared"]
    (row,) = [r for r in out["rows"] if r[0].startswith(DIST)]
    code, last, push, hb, metrics, readings = row
    assert "dashboard test SA" in code
    assert "tunnel x1" in push
    assert "packets" in hb
    assert "cpu0 42%" in metrics and "mem0 65536/98304" in metrics
    assert 'instant_power_w = 321' in readings
    assert out["served"] > 0 and served.info["heartbeat"] in out["server"]
    assert "config-solicitation" in out["detail"] and "Last heartbeats" in out["detail"]
    assert "module 1001 (100): module 1001 ran show status" in out["pushResult"]
    assert any("md-command" in p and DIST in p for p in out["pushes"])


@pytest.mark.skipif(NODE is None, reason="node is not installed (headless page check)")
def test_page_asks_for_the_token_again_when_the_server_refuses_it(served, tmp_path):
    out = _run_page(tmp_path, served.base, "not-the-token", "refused")
    assert out["errors"] == []
    assert "refused the token" in out["login"]
    assert out["appHidden"] is True and out["tokenKept"] is False
