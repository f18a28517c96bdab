"""The course's widgets in a real browser: JupyterLab + headless Chromium, driven by Playwright.

    .venv/bin/python scripts/browser_test.py [--root notebooks] [NOTEBOOK.ipynb ...]     (or: make browser-test)

For every notebook with a widget (a code cell that uses ipywidgets, ``interact`` or ``widgets.``) it
opens the notebook in JupyterLab in headless Chromium, clears its outputs and runs it with Run All
(the menus, as a reader would), waits for the kernel to be idle, then moves each control of each
widget through the UI (arrow keys on a focused slider, a click on a checkbox / toggle / radio button,
another option picked in a dropdown) and asserts that the widget's output (its images and text, not
the controls) changed within a time limit. It fails on any Python error (an ``error`` message from the
kernel, a traceback on stderr, an error shown in an output) and on any browser console error not in
``IGNORED_CONSOLE`` below. One screenshot per widget state goes to ``outputs/browser/<notebook>/``;
one summary line per notebook is printed. ``--upto-last-widget`` runs each notebook only down to its
last widget (as committed) instead of Run All: quicker, but later cells then cannot spoil a widget.

Nothing is written into the checkout's notebooks or into the user's Jupyter configuration: the server
runs on 127.0.0.1, a free port and a random token, with throw-away config / data / runtime / settings /
workspace / checkpoint folders, autosave off and a pre-save hook that refuses every save.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# A notebook has a widget when one of its code cells matches this.
WIDGET_RE = re.compile(r"\bipywidgets\b|\binteract(?:ive|_manual)?\s*\(|\bwidgets\.")

# Per-notebook expectations (optional; a notebook without an entry needs at least 1 widget with 1 control).
EXPECT: dict[str, dict] = {
    "03_diffusion_vs_flow_matching.ipynb": {"widgets": 1, "controls": 2},  # method dropdown, steps slider
    "04_pi0_action_expert.ipynb": {"widgets": 1, "controls": 3},  # state-token checkbox, actions toggle, query
}

# Browser console errors that are not the course's: (regex, why it is harmless). Keep this list short.
IGNORED_CONSOLE: list[tuple[str, str]] = []

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]

# JupyterLab settings for the throw-away settings folder.
LAB_SETTINGS = {
    "@jupyterlab/docmanager-extension/plugin": {"autosave": False},
    "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},  # every cell attached to the DOM
    "@jupyterlab/apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
    "@jupyter-widgets/jupyterlab-manager/plugin": {"saveState": False},
}

SERVER_CONFIG = '''
from tornado.web import HTTPError
def _refuse_save(model, path, contents_manager, **kwargs):  # an HTTPError is the one a pre-save hook may refuse with
    raise HTTPError(403, f"browser test: refusing to save {path!r} (the checkout stays as it is)")
c.FileContentsManager.pre_save_hook = _refuse_save
c.FileCheckpoints.checkpoint_dir = CHECKPOINTS  # absolute: not the checkout's .ipynb_checkpoints/
'''


# --------------------------------------------------------------------------------------------------
# JavaScript run in the page (JupyterLab exposes its app as window.jupyterapp with expose_app_in_browser)

JS_HELPERS = r"""
() => {
  if (window.__bt) return;
  const CONTROL = [
    ['slider', '.widget-slider, .widget-hslider, .widget-vslider'],
    ['dropdown', '.widget-dropdown'],
    ['select', '.widget-select, .widget-select-multiple'],
    ['checkbox', '.widget-checkbox'],
    ['togglebuttons', '.widget-toggle-buttons'],
    ['radio', '.widget-radio'],
    ['togglebutton', '.widget-toggle-button'],
    ['button', 'button.widget-button'],
    ['text', '.widget-text, .widget-textarea'],
    ['unsupported', '.widget-play, .widget-colorpicker, .widget-datepicker, .widget-upload, .widget-tagsinput'],
  ];
  const ALL = CONTROL.map(c => c[1]).join(', ');
  const bt = window.__bt = {errors: [], panel: null};
  const hash = s => { let h = 2166136261; for (let i = 0; i < s.length; i++) { h ^= s.charCodeAt(i); h = Math.imul(h, 16777619); } return (h >>> 0).toString(16); };
  bt.find = (path) => {
    for (const w of window.jupyterapp.shell.widgets('main')) {
      if (w.context && w.context.path === path && w.content && w.content.widgets) return w;
    }
    return null;
  };
  bt.ready = (path) => {
    const p = bt.find(path);
    if (!p || !p.context.isReady || !p.sessionContext.session || !p.sessionContext.session.kernel) return 'opening';
    const st = p.sessionContext.session.kernel.status;
    if (st !== 'idle') return 'kernel ' + st;
    if (bt.panel !== p) {
      bt.panel = p;
      p.sessionContext.iopubMessage.connect((_, msg) => {
        const t = msg.header.msg_type, c = msg.content;
        if (t === 'error') bt.errors.push({ename: c.ename, evalue: c.evalue, traceback: (c.traceback || []).join('\n')});
        if (t === 'stream' && c.name === 'stderr' && /Traceback \(most recent call last\)/.test(c.text))
          bt.errors.push({ename: 'stderr', evalue: 'a traceback on stderr', traceback: c.text});
      });
    }
    return 'ready';
  };
  bt.kernel = () => { const s = bt.panel.sessionContext.session; return s && s.kernel ? s.kernel.status : 'none'; };
  const codeCells = () => bt.panel.content.widgets.map((c, i) => [c, i]).filter(([c]) => c.model.type === 'code');
  bt.progress = (upto) => {
    const cells = codeCells().filter(([c, i]) => c.model.sharedModel.getSource().trim() !== '' && (upto == null || i <= upto));
    const done = cells.filter(([c]) => c.model.executionCount !== null).length;
    return {kernel: bt.kernel(), done, total: cells.length, errors: bt.errors.length};
  };
  bt.cleared = () => codeCells().every(([c]) => c.model.executionCount === null && c.model.outputs.length === 0);
  // Cells whose outputs hold an error, and error text shown anywhere in the notebook (widget outputs too).
  bt.shownErrors = () => {
    const found = [];
    for (const [c, i] of codeCells()) {
      for (const o of c.model.outputs.toJSON()) {
        if (o.output_type === 'error') found.push({cell: i, text: `${o.ename}: ${o.evalue}`});
        if (o.output_type === 'stream' && /Traceback \(most recent call last\)/.test(o.text)) found.push({cell: i, text: 'traceback on ' + o.name});
      }
      const txt = c.node.querySelector('.jp-Cell-outputWrapper') ? c.node.querySelector('.jp-Cell-outputWrapper').textContent : '';
      for (const pat of [/Traceback \(most recent call last\)/, /Error displaying widget/, /Error rendering output/, /Error creating widget/, /Error: Could not create a view/])
        if (pat.test(txt)) found.push({cell: i, text: 'shown: ' + pat.source.replace(/\\/g, '')});
    }
    return found;
  };
  // Tag every cell whose outputs hold a widget view; return [{widget, cell}].
  bt.widgetCells = (tag = true) => {
    const out = [];
    for (const [c, i] of codeCells()) {
      const hasView = c.model.outputs.toJSON().some(o => o.data && o.data['application/vnd.jupyter.widget-view+json']);
      if (!hasView) continue;
      if (tag) c.outputArea.node.setAttribute('data-bt-widget', String(out.length));
      out.push({widget: out.length, cell: i});
    }
    return out;
  };
  const clean = (d) => d ? d.textContent.replace(/[\u200b\s]+/g, ' ').trim() : '';
  const label = (el, kind) => (el.matches('button') ? clean(el) : '')
    || clean(el.querySelector(':scope > .widget-label')) || clean(el.querySelector('.widget-label-basic')) || kind;
  // Tag the controls inside widget w; return [{control, kind, label, value}].
  bt.controls = (w) => {
    const root = document.querySelector(`[data-bt-widget="${w}"]`);
    const els = [...root.querySelectorAll(ALL)].filter(el => !el.parentElement.closest(ALL));
    return els.map((el, j) => {
      el.setAttribute('data-bt-control', `${w}-${j}`);
      const kind = CONTROL.find(([, sel]) => el.matches(sel))[0];
      const disabled = !!el.querySelector(':disabled') || el.matches(':disabled');
      return {control: j, kind, label: label(el, kind), value: bt.value(w, j), disabled};
    });
  };
  bt.value = (w, j) => {
    const el = document.querySelector(`[data-bt-control="${w}-${j}"]`);
    if (!el) return null;
    const q = s => el.querySelector(s);
    if (el.matches('.widget-slider, .widget-hslider, .widget-vslider')) {
      const r = q('.widget-readout'), h = q('.noUi-handle');
      return (r && r.textContent.trim()) || (h && (h.getAttribute('aria-valuetext') || h.getAttribute('aria-valuenow'))) || '';
    }
    if (q('select')) return [...q('select').selectedOptions].map(o => o.textContent).join(',');
    if (el.matches('.widget-checkbox')) return String(q('input').checked);
    if (el.matches('.widget-toggle-buttons')) return [...el.querySelectorAll('.mod-active')].map(b => b.textContent.trim()).join(',');
    if (el.matches('.widget-radio')) { const c = q('input:checked'); return c ? c.parentElement.textContent.trim() : ''; }
    if (el.matches('.widget-toggle-button')) return String(el.classList.contains('mod-active'));
    if (q('input, textarea')) return q('input, textarea').value;
    return el.textContent.trim();
  };
  // What the widget shows, without its controls: its text, images, canvases and SVGs.
  bt.signature = (w) => {
    const root = document.querySelector(`[data-bt-widget="${w}"]`);
    if (!root) return null;
    const clone = root.cloneNode(true);
    clone.querySelectorAll('[data-bt-control]').forEach(e => e.remove());
    const imgs = [...clone.querySelectorAll('img')].map(i => i.getAttribute('src') || '');
    const svgs = [...clone.querySelectorAll('svg')].map(s => s.outerHTML);
    const canv = [...root.querySelectorAll('canvas')].filter(c => !c.closest('[data-bt-control]')).map(c => { try { return c.toDataURL(); } catch (e) { return ''; } });
    const text = clone.textContent.replace(/\s+/g, ' ').trim();
    return {hash: hash(text + '\u0000' + imgs.join('\u0000') + svgs.join('') + canv.join('')), images: imgs.length + canv.length + svgs.length, text: text.slice(0, 160)};
  };
}
"""


# --------------------------------------------------------------------------------------------------

def widget_notebooks(root: Path, names: list[str]) -> list[Path]:
    paths = [root / n if not Path(n).is_absolute() else Path(n) for n in names] or sorted(root.glob("*.ipynb"))
    found = []
    for p in paths:
        nb = json.loads(p.read_text())
        for cell in nb.get("cells", []):
            src = cell.get("source", "")
            src = "".join(src) if isinstance(src, list) else src
            if cell.get("cell_type") == "code" and WIDGET_RE.search(src):
                found.append(p)
                break
    return found


def recorded_seconds(nb: Path, upto_last_widget: bool = False) -> float:
    """How long the notebook (or its cells down to its last widget) took when last executed, from the times
    nbclient records in each cell's metadata; 0 where none are recorded."""
    from datetime import datetime

    cells = [c for c in json.loads(nb.read_text()).get("cells", []) if c.get("cell_type") == "code"]
    if upto_last_widget:
        shown = [i for i, c in enumerate(cells) if any("application/vnd.jupyter.widget-view+json" in o.get("data", {})
                                                        for o in c.get("outputs", []))]
        cells = cells[:shown[-1] + 1] if shown else cells
    total = 0.0
    for cell in cells:
        e = cell.get("metadata", {}).get("execution", {})
        try:
            total += (datetime.fromisoformat(e["shell.execute_reply"].replace("Z", "+00:00"))
                      - datetime.fromisoformat(e["iopub.execute_input"].replace("Z", "+00:00"))).total_seconds()
        except (KeyError, ValueError, AttributeError):
            pass
    return total


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_lab_config(tmp: Path) -> dict[str, str]:
    dirs = {k: tmp / k for k in ("config", "data", "runtime", "settings", "workspaces", "ipython")}
    for d in dirs.values():
        d.mkdir(parents=True)
    (dirs["config"] / "jupyter_server_config.py").write_text(SERVER_CONFIG.replace("CHECKPOINTS", repr(str(tmp / "checkpoints"))))
    for plugin, values in LAB_SETTINGS.items():
        f = dirs["settings"] / f"{plugin}.jupyterlab-settings"
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(json.dumps(values))
    return {"JUPYTER_CONFIG_DIR": str(dirs["config"]), "JUPYTER_DATA_DIR": str(dirs["data"]),
            "JUPYTER_RUNTIME_DIR": str(dirs["runtime"]), "JUPYTERLAB_SETTINGS_DIR": str(dirs["settings"]),
            "JUPYTERLAB_WORKSPACES_DIR": str(dirs["workspaces"]), "IPYTHONDIR": str(dirs["ipython"]),
            "JUPYTER_PLATFORM_DIRS": "1"}


def start_lab(root: Path, tmp: Path, timeout: float) -> tuple[subprocess.Popen, str, str, float]:
    token = secrets.token_hex(24)
    env = {**os.environ, **write_lab_config(tmp), "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1"),
           "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl"), "PYDEVD_DISABLE_FILE_VALIDATION": "1"}
    last = ""
    for _attempt in range(3):  # a free port can be taken between the check and the bind
        port = free_port()
        cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
               "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
               "--LabApp.expose_app_in_browser=True", "--LanguageServerManager.autodetect=False",
               f"--LanguageServerManager.virtual_documents_dir={tmp / 'virtual_documents'}"]
        if os.geteuid() == 0:
            cmd.append("--allow-root")
        log = open(tmp / "jupyterlab.log", "w")
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=root, start_new_session=True)
        url = f"http://127.0.0.1:{port}"
        while time.perf_counter() - t0 < timeout and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2) as r:
                    if r.status == 200:
                        return proc, url, token, time.perf_counter() - t0
            except OSError:
                time.sleep(0.2)
        stop_lab(proc)
        last = (tmp / "jupyterlab.log").read_text()[-3000:]
    raise RuntimeError(f"JupyterLab did not start; its log ends with:\n{last}")


def stop_lab(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)  # its own session: the server and the kernels it started
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


# --------------------------------------------------------------------------------------------------

@dataclass
class Result:
    name: str
    ok: bool = True
    problems: list[str] = field(default_factory=list)
    open_s: float = 0.0
    run_s: float = 0.0
    run_how: str = "Run All"
    moved: int = 0
    moves: list[str] = field(default_factory=list)
    responses: list[float] = field(default_factory=list)
    widgets: int = 0
    skipped: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)
    ignored: int = 0

    def fail(self, msg: str) -> None:
        self.ok = False
        self.problems.append(msg)


class Failure(Exception):
    pass


async def poll(fn, until, timeout: float, every: float = 0.25):
    """Call async fn until until(value) holds; return (value, seconds) or raise TimeoutError with the last value."""
    t0 = time.perf_counter()
    while True:
        v = await fn()
        if until(v):
            return v, time.perf_counter() - t0
        if time.perf_counter() - t0 > timeout:
            raise TimeoutError(v)
        await asyncio.sleep(every)


async def click_menu(page, menu: str, item: str) -> None:
    await page.locator("#jp-MainMenu .lm-MenuBar-itemLabel", has_text=re.compile(f"^{re.escape(menu)}$")).click()
    entry = page.locator(".lm-Menu:not(.lm-MenuBar) .lm-Menu-item:not(.lm-mod-hidden) .lm-Menu-itemLabel",
                         has_text=re.compile(f"^{re.escape(item)}$")).first
    await entry.click()


async def move_control(page, w: int, c: dict) -> tuple[str, float]:
    """Set a different value on control c of widget w through the UI.

    Returns how ('' if it has no other value) and when the action that changed it was made."""
    loc = page.locator(f'[data-bt-control="{w}-{c["control"]}"]')
    await loc.scroll_into_view_if_needed()
    kind, now = c["kind"], time.perf_counter
    if kind == "slider":
        handle = loc.locator(".noUi-handle").first
        await handle.focus()
        aria = await handle.evaluate("h => ['valuenow', 'valuemin', 'valuemax'].map(a => parseFloat(h.getAttribute('aria-' + a)))")
        vertical = await loc.evaluate("e => e.matches('.widget-vslider') || !!e.querySelector('.noUi-vertical')")
        up, down = ("ArrowUp", "ArrowDown") if vertical else ("ArrowRight", "ArrowLeft")
        keys = (down, up) if aria[0] >= aria[2] else (up, down)  # at the top: step down
        for key in keys:
            t = now()
            await handle.press(key)
            try:
                await poll(lambda: page.evaluate("([w, j]) => window.__bt.value(w, j)", [w, c["control"]]),
                           lambda v: v != c["value"], 1.0, every=0.05)
                return key, t
            except TimeoutError:
                pass
        return key, t
    if kind in ("dropdown", "select"):
        sel = loc.locator("select")
        n = await sel.locator("option").count()
        cur = await sel.evaluate("s => s.selectedIndex")
        if n < 2:
            return "", now()
        t = now()
        await sel.select_option(index=(cur + 1) % n)
        return f"option {(cur + 1) % n + 1} of {n}", t
    if kind == "checkbox":
        t = now()
        await loc.locator("input").click()
        return "click", t
    if kind in ("togglebuttons", "radio"):
        target = loc.locator("button:not(.mod-active)" if kind == "togglebuttons" else "input:not(:checked)").first
        if await target.count() == 0:
            return "", now()
        t = now()
        await target.click()
        return "click", t
    if kind in ("togglebutton", "button"):
        t = now()
        await loc.click()
        return "click", t
    if kind == "text":
        box = loc.locator("input, textarea").first
        t = now()  # a text box may update on each key (continuous_update) or on Enter
        if await box.get_attribute("type") == "number":
            await box.press("ArrowUp")
        else:
            await box.press("End")
            await box.press("x")
        await box.press("Enter")
        return "typing", t
    return "", now()


async def test_notebook(browser, url: str, token: str, root: Path, nb: Path, out_dir: Path, args) -> Result:
    rel = nb.resolve().relative_to(root.resolve()).as_posix()
    res = Result(nb.name)
    shots = out_dir / nb.stem
    shutil.rmtree(shots, ignore_errors=True)
    shots.mkdir(parents=True)
    context = await browser.new_context(viewport={"width": 1400, "height": 1000})  # own storage per notebook
    page = await context.new_page()

    def on_console(msg):
        if msg.type == "error":
            loc = msg.location or {}
            where = f" ({loc['url']}:{loc.get('lineNumber', '')})" if loc.get("url") else ""
            res.console.append(f"console error: {msg.text}{where}")

    page.on("console", on_console)
    page.on("pageerror", lambda exc: res.console.append(f"page error: {exc}"))
    ev = lambda js, arg=None: page.evaluate(js, arg)  # noqa: E731
    t_open = time.perf_counter()
    try:
        await page.goto(f"{url}/lab/workspaces/bt-{nb.stem}/tree/{rel}?token={token}&reset", wait_until="load")
        await page.wait_for_function("() => window.jupyterapp && window.jupyterapp.started !== undefined", timeout=60_000)
        await ev(JS_HELPERS)
        try:
            await poll(lambda: ev("p => window.__bt.ready(p)", rel), lambda s: s == "ready", args.open_timeout)
        except TimeoutError as e:
            raise Failure(f"notebook did not open with an idle kernel in {args.open_timeout:.0f} s ({e})")
        await page.locator(".jp-Notebook").first.wait_for()
        res.open_s = time.perf_counter() - t_open
        # Clear the committed outputs, then Run All (or run up to the last widget), from the menus.
        upto = None
        if args.upto_last_widget:
            shown = await ev("() => window.__bt.widgetCells(false).map(c => c.cell)")
            upto = max(shown) if shown else None  # committed without widget outputs: run all
        await click_menu(page, "Edit", "Clear Outputs of All Cells")
        await poll(lambda: ev("() => window.__bt.cleared()"), bool, 10)
        t0 = time.perf_counter()
        if upto is None:
            how = "Run All"
            await click_menu(page, "Run", "Run All Cells")
        else:
            how = f"run to cell {upto}"
            await page.locator(".jp-Notebook .jp-Cell").nth(upto).locator(".jp-InputPrompt").click()
            await click_menu(page, "Run", "Run All Above Selected Cell")
            await click_menu(page, "Run", "Run Selected Cell and Do not Advance")
        finished = lambda p: p["errors"] or (p["kernel"] == "idle" and p["done"] == p["total"])  # noqa: E731
        try:
            for _ in range(2):  # then confirm a moment later: idle can flicker between two cells
                prog, _ = await poll(lambda: ev("u => window.__bt.progress(u)", upto), finished, args.run_timeout, 0.5)
                await asyncio.sleep(0.5)
                if finished(await ev("u => window.__bt.progress(u)", upto)):
                    break
        except TimeoutError as e:
            raise Failure(f"{how} did not finish in {args.run_timeout:.0f} s: {e}")
        res.run_s, res.run_how = time.perf_counter() - t0, how
        await asyncio.sleep(0.3)
        await check_errors(page, res, how)
        if not res.ok:
            await page.screenshot(path=str(shots / "run-error.png"))
            raise Failure(f"stopped after {how}")
        await exercise_widgets(page, res, shots, args)
    except Failure as e:
        res.fail(str(e))
    except Exception as e:  # a harness or Playwright failure: report it as this notebook's failure
        res.fail(f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
        try:
            await page.screenshot(path=str(shots / "harness-error.png"))
        except Exception:
            pass
    finally:
        await asyncio.sleep(0.5)  # late console errors
        for line in res.console:
            why = next((r for p, r in IGNORED_CONSOLE if re.search(p, line)), None)
            if why is None:
                res.fail(line[:400])
            else:
                res.ignored += 1
        await page.close(run_before_unload=False)
        await context.close()
    return res


async def check_errors(page, res: Result, when: str) -> None:
    errs = await page.evaluate("() => { const e = window.__bt.errors; window.__bt.errors = []; return e; }")
    shown = await page.evaluate("() => window.__bt.shownErrors()")
    for e in errs:
        cells = [s["cell"] for s in shown if s["text"] == f"{e['ename']}: {e['evalue']}"] or [s["cell"] for s in shown]
        where = [ln.strip() for ln in re.sub(r"\x1b\[[0-9;]*m", "", e["traceback"]).splitlines()
                 if re.match(r"\s*(Cell In\[|File )", ln)]
        res.fail(f"Python error during {when}: {e['ename']}: {e['evalue']}"
                 + (f" (cell {cells[0]}{', ' + where[-1] if where else ''})" if cells else f" ({where[-1]})" if where else ""))
    if errs:
        return  # the same error is shown in an output: said once is enough
    for e in shown:
        msg = f"error shown in cell {e['cell']} after {when}: {e['text']}"
        if msg not in res.problems:
            res.fail(msg)


def slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", s).strip("-")[:30] or "control"


async def exercise_widgets(page, res: Result, shots: Path, args) -> None:
    ev = page.evaluate
    cells = await ev("() => window.__bt.widgetCells()")
    res.widgets = len(cells)
    exp = EXPECT.get(res.name, {})
    if len(cells) < exp.get("widgets", 1):
        res.fail(f"{len(cells)} widget(s) shown after Run All, expected at least {exp.get('widgets', 1)}")
    n_controls = 0
    for wc in cells:
        w = wc["widget"]
        root = page.locator(f'[data-bt-widget="{w}"]')
        # The first view: controls rendered and an output that stays the same for a moment.
        try:
            await poll(lambda: ev("w => window.__bt.controls(w).length", w), lambda n: n > 0, 20)
        except TimeoutError:
            pass
        controls = await ev("w => window.__bt.controls(w)", w)
        try:
            sig, _ = await settle(page, w, None, args.response_timeout)
        except TimeoutError as e:
            res.fail(f"widget {w} (cell {wc['cell']}) showed no output within {args.response_timeout:.0f} s ({e})")
            sig = None
        await root.scroll_into_view_if_needed()
        await root.screenshot(path=str(shots / f"w{w}-0-initial.png"))
        for c in controls:
            name = f"{c['label']} ({c['kind']})"
            if c["kind"] == "unsupported" or c["disabled"]:
                res.skipped.append(name)
                continue
            c["value"] = await ev("([w, j]) => window.__bt.value(w, j)", [w, c["control"]])
            how, t0 = await move_control(page, w, c)
            if not how:
                res.skipped.append(f"{name}: no other value")
                continue
            n_controls += 1
            res.moved += 1
            new_value = await ev("([w, j]) => window.__bt.value(w, j)", [w, c["control"]])
            if c["kind"] != "button" and new_value == c["value"]:
                res.fail(f"widget {w} (cell {wc['cell']}): {name} still shows {c['value']!r} after {how}")
            try:
                new_sig, dt = await settle(page, w, sig["hash"] if sig else None, args.response_timeout, t0)
                res.responses.append(dt)
                res.moves.append(f"{c['label']} {c['value']!r}->{new_value!r} {dt:.2f} s")
                sig = new_sig
            except TimeoutError:
                res.fail(f"widget {w} (cell {wc['cell']}): {name} {c['value']!r} -> {new_value!r}: "
                         f"the output did not change within {args.response_timeout:.0f} s")
            shot = shots / f"w{w}-{c['control'] + 1}-{slug(c['label'])}.png"
            await root.screenshot(path=str(shot))
            await check_errors(page, res, f"moving {name} of widget {w} (cell {wc['cell']}), see {shot}")
    if n_controls < exp.get("controls", 1):
        res.fail(f"{n_controls} control(s) moved, expected at least {exp.get('controls', 1)}")


async def settle(page, w: int, old_hash: str | None, timeout: float, t0: float | None = None) -> tuple[dict, float]:
    """Wait until widget w shows something (different from old_hash if given) that holds while the kernel is idle.

    Returns the signature and the seconds from t0 to when it first appeared."""
    t0 = time.perf_counter() if t0 is None else t0
    seen_at, last = None, None
    while True:
        s = await page.evaluate("w => ({sig: window.__bt.signature(w), kernel: window.__bt.kernel(), "
                                "errors: window.__bt.errors.length})", w)
        now, sig = time.perf_counter(), s["sig"]
        if s["errors"]:
            return sig, now - t0
        fresh = bool(sig and (sig["text"] or sig["images"]) and sig["hash"] != old_hash)
        if not fresh:
            seen_at, last = None, None
        elif last is None or last["hash"] != sig["hash"]:
            seen_at, last = now, sig
        elif s["kernel"] == "idle" and now - seen_at >= 0.3:
            return sig, seen_at - t0
        if now - t0 > timeout:
            raise TimeoutError(sig)
        await asyncio.sleep(0.1)


async def run_all(args, notebooks: list[Path], root: Path, url: str, token: str) -> list[Result]:
    from playwright.async_api import async_playwright

    out_dir = Path(args.out)
    async with async_playwright() as pw:
        t0 = time.perf_counter()
        browser = await pw.chromium.launch(executable_path=args.chromium, headless=True, args=CHROMIUM_FLAGS)
        print(f"browser-test: {Path(args.chromium).name} {browser.version} started in {time.perf_counter() - t0:.1f} s", flush=True)
        sem = asyncio.Semaphore(args.jobs)

        async def one(nb):
            async with sem:
                t = time.perf_counter()
                r = await test_notebook(browser, url, token, root, nb, out_dir, args)
                report(r, time.perf_counter() - t)
                return r

        results = await asyncio.gather(*(one(nb) for nb in notebooks))
        await browser.close()
    return results


def report(r: Result, total: float) -> None:
    slow = f", slowest response {max(r.responses):.2f} s" if r.responses else ""
    skipped = f"; skipped: {', '.join(r.skipped)}" if r.skipped else ""
    ignored = f"; {r.ignored} benign console message(s) ignored" if r.ignored else ""
    print(f"{'PASS' if r.ok else 'FAIL'} {r.name}: opened {r.open_s:.0f} s, {r.run_how} {r.run_s:.0f} s, {r.widgets} widget(s), {r.moved} "
          f"control(s) moved, {len(r.moves)} responded{slow} [{'; '.join(r.moves)}]{skipped}{ignored}; {total:.0f} s in all", flush=True)
    for p in r.problems:
        print(f"    {r.name}: {p}", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("notebooks", nargs="*", help="notebooks (default: every one in --root that has a widget)")
    ap.add_argument("--root", default=str(REPO / "notebooks"), help="JupyterLab's root folder")
    ap.add_argument("--out", default=str(REPO / "outputs" / "browser"), help="screenshots go here")
    ap.add_argument("--chromium", default=os.environ.get("CHROMIUM", "/usr/bin/chromium"))
    ap.add_argument("--jobs", type=int, default=max(1, min(4, os.cpu_count() or 1)),
                    help="notebooks run at once (each kernel uses one core; default: the cores, at most 4)")
    ap.add_argument("--open-timeout", type=float, default=90, help="s for a notebook to open with an idle kernel")
    ap.add_argument("--run-timeout", type=float, default=600, help="s for Run All")
    ap.add_argument("--upto-last-widget", action="store_true",
                    help="run each notebook only down to its last widget (as committed), not Run All: quicker")
    ap.add_argument("--response-timeout", type=float, default=60, help="s for a widget to respond to a control")
    args = ap.parse_args()
    root = Path(args.root).resolve()
    t_all = time.perf_counter()
    notebooks = widget_notebooks(root, args.notebooks)
    if not notebooks:
        print(f"browser-test: no notebook with a widget in {root}", file=sys.stderr)
        return 1
    print(f"browser-test: {len(notebooks)} notebook(s) with widgets: {', '.join(p.name for p in notebooks)}", flush=True)
    notebooks.sort(key=lambda p: recorded_seconds(p, args.upto_last_widget), reverse=True)  # the longest first: the runs at once end closer together
    if not os.access(args.chromium, os.X_OK):
        print(f"browser-test: no browser at {args.chromium} (scripts/install_chromium.sh installs it)", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="vla-browser-test-") as tmp:
        proc, url, token, t_lab = start_lab(root, Path(tmp), timeout=120)
        print(f"browser-test: JupyterLab up on {url} in {t_lab:.1f} s", flush=True)
        try:
            results = asyncio.run(run_all(args, notebooks, root, url, token))
        finally:
            stop_lab(proc)
    failed = [r.name for r in results if not r.ok]
    print(f"browser-test: {len(results) - len(failed)}/{len(results)} notebooks passed in "
          f"{time.perf_counter() - t_all:.0f} s; screenshots in {os.path.relpath(args.out)}"
          + (f"; FAILED: {', '.join(failed)}" if failed else ""), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
