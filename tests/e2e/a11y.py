"""Accessibility checks of a dashboard page in a real browser: a title and one ``<h1>``; every form control
labelled, every image with alt text, every button and link with a name; text and buttons at a contrast
of at least 4.5:1 (computed from the colours the browser resolved); and the Tab key reaching the page's
main actions. ``audit`` runs them all and writes the page's screenshot."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from playwright.sync_api import Page

SHOTS = Path(__file__).parents[1] / "artifacts" / "dashboard"
MIN_CONTRAST = 4.5
TAB_LIMIT = 200
"""Tab presses before a main action not yet reached counts as unreachable."""

# What a screen reader could not name or read: the names as the browser computes them (content,
# aria-label, aria-labelledby, title, a label element).
PROBLEMS = """() => {
  const bad = [];
  const short = (el) => el.outerHTML.slice(0, 90);
  const named = (el) => (el.getAttribute("aria-label") || "").trim() !== ""
    || (el.getAttribute("aria-labelledby") || "").split(/\\s+/).some((id) => id && document.getElementById(id))
    || (el.getAttribute("title") || "").trim() !== "";
  if (!document.title.trim()) bad.push("no <title>");
  const h1 = document.querySelectorAll("h1").length;
  if (h1 !== 1) bad.push(`${h1} <h1> elements`);
  for (const el of document.querySelectorAll("input, select, textarea")) {
    if (el.type === "hidden") continue;
    if (!(el.labels && el.labels.length) && !named(el)) bad.push(`unlabelled control ${short(el)}`);
  }
  for (const el of document.querySelectorAll("img")) {
    if (!el.hasAttribute("alt")) bad.push(`image without alt ${short(el)}`);
  }
  for (const el of document.querySelectorAll("button, a[href], [role=button], input[type=submit]")) {
    const text = (el.innerText || el.textContent || "").trim() || (el.tagName === "INPUT" ? el.value : "");
    if (!text && !named(el) && !el.querySelector("img[alt]:not([alt=''])")) bad.push(`unnamed ${short(el)}`);
  }
  return bad;
}"""

# Every visible element with text of its own (and every button), its colour against the background it
# is drawn on: the first opaque background among it and its ancestors, semi-transparent ones blended in.
CONTRAST = """(minimum) => {
  const parse = (c) => { const m = c.match(/[\\d.]+/g) || ["0", "0", "0", "0"];
    return [+m[0], +m[1], +m[2], m.length > 3 ? +m[3] : 1]; };
  const over = (top, under) => [0, 1, 2].map((i) => top[i] * top[3] + under[i] * (1 - top[3])).concat([1]);
  const background = (el) => {
    const layers = [];
    for (let e = el; e; e = e.parentElement) {
      const c = parse(getComputedStyle(e).backgroundColor);
      if (c[3] > 0) layers.push(c);
      if (c[3] >= 1) break;
    }
    let colour = [255, 255, 255, 1];
    for (const layer of layers.reverse()) colour = over(layer, colour);
    return colour;
  };
  const luminance = (c) => {
    const [r, g, b] = c.slice(0, 3).map((v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const ratio = (a, b) => { const [x, y] = [luminance(a), luminance(b)].sort((p, q) => q - p); return (x + 0.05) / (y + 0.05); };
  const bad = [];
  for (const el of document.body.querySelectorAll("*")) {
    if (el.closest("svg")) continue;
    const own = [...el.childNodes].some((n) => n.nodeType === Node.TEXT_NODE && n.textContent.trim());
    if (!own && el.tagName !== "BUTTON") continue;
    const style = getComputedStyle(el);
    if (style.visibility === "hidden" || !el.getClientRects().length) continue;
    const back = background(el);
    const r = ratio(over(parse(style.color), back), back);
    if (r < minimum) {
      const text = (el.innerText || el.textContent || "").trim().slice(0, 40);
      bad.push(`contrast ${r.toFixed(2)} of ${el.tagName.toLowerCase()}.${el.className} "${text}" (${style.color} on rgb(${back.slice(0, 3).join(", ")}))`);
    }
  }
  return bad;
}"""

FOCUSED = """() => { const el = document.activeElement;
  if (!el || el === document.body) return null;
  return [el.tagName.toLowerCase(), el.getAttribute("type") || "",
          (el.getAttribute("aria-label") || el.innerText || el.value || "").trim()]; }"""


def problems(page: Page) -> list[str]:
    """What the page fails of the checks that need no keyboard."""
    found: list[str] = page.evaluate(PROBLEMS)
    return found + list(page.evaluate(CONTRAST, MIN_CONTRAST))


def tab_through(page: Page, actions: Sequence[str]) -> list[str]:
    """Press Tab from the top of the page until every one of ``actions`` (the accessible names of links
    or buttons) had the focus; what went wrong (the first stop not a link or button, actions not reached)."""
    # Tab starts from the focused element, or from where the last one was (a blur keeps that place): the
    # page's body, focused, puts the start at the top whatever was clicked before
    page.evaluate(
        "() => { const b = document.body; b.setAttribute('tabindex', '-1'); b.focus();"
        " b.removeAttribute('tabindex'); window.scrollTo(0, 0); }"
    )
    wanted, bad = set(actions), []
    for press in range(TAB_LIMIT):
        page.keyboard.press("Tab")
        focused = page.evaluate(FOCUSED)
        if focused is None:
            break
        tag, kind, name = focused
        if press == 0 and not (tag in ("a", "button") or kind == "submit"):
            bad.append(f"the first Tab stop is <{tag}>, not a link or button")
        wanted.discard(name)
        if not wanted:
            break
    return bad + [f"Tab never reaches {name!r}" for name in sorted(wanted)]


def audit(page: Page, name: str, actions: Sequence[str] = ()) -> list[str]:
    """Screenshot the page to ``tests/artifacts/dashboard/{name}.png``; every check's failures, named."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
    return [f"{name}: {p}" for p in problems(page) + tab_through(page, actions)]
