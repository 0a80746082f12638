"""Reading the parsed HTML tree: microdata item properties and the page's main visible text.

parsel hands out lxml elements, which carry no type information: they are ``Any`` here and
nowhere else.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from parsel import Selector

MAX_DEPTH = 200

# Subtrees whose text is not about the page's own product.
_SKIPPED_TAGS = frozenset(
    {
        "script",
        "style",
        "noscript",
        "template",
        "nav",
        "header",
        "footer",
        "aside",
        "select",
        "option",
        "datalist",
        "svg",
        "iframe",
        "head",
    }
)
_SKIPPED_MARKERS = re.compile(
    r"related|recommend|carousel|similar|upsell|up-sell|cross-?sell|also-?(bought|viewed)|"
    r"recently-?viewed|you-may|newsletter|cookie|menu|breadcrumb|site-(?:header|footer)|sidebar|"
    r"variant|swatch|review",
    re.IGNORECASE,
)
_HIDDEN_STYLE = re.compile(r"display\s*:\s*none|visibility\s*:\s*hidden", re.IGNORECASE)


def root_of(selector: Selector) -> Any:
    return selector.root


def is_element(node: Any) -> bool:
    return isinstance(getattr(node, "tag", None), str)


def text_of(node: Any) -> str:
    """All text inside ``node``, whitespace collapsed."""
    return " ".join("".join(node.itertext()).split()) if is_element(node) else ""


def main_text(selector: Selector) -> str:
    """The visible text of the page's body, without navigation, footers, hidden parts, variant
    pickers and product carousels: the text that talks about this page's product."""
    root = root_of(selector)
    if not is_element(root):
        return ""
    bodies = root.xpath("//body")
    parts: list[str] = []
    for body in bodies or [root]:
        _collect(body, parts, 0)
    return " ".join(" ".join(parts).split())


def _skipped(element: Any) -> bool:
    if element.tag.lower() in _SKIPPED_TAGS:
        return True
    if element.get("hidden") is not None or element.get("aria-hidden") == "true":
        return True
    if _HIDDEN_STYLE.search(element.get("style") or ""):
        return True
    markers = f"{element.get('class') or ''} {element.get('id') or ''}"
    return bool(_SKIPPED_MARKERS.search(markers))


def _collect(element: Any, parts: list[str], depth: int) -> None:
    if depth > MAX_DEPTH:
        return
    if element.text:
        parts.append(element.text)
    for child in element:
        if is_element(child) and not _skipped(child):
            _collect(child, parts, depth + 1)
        if child.tail:
            parts.append(child.tail)


# --- Microdata -------------------------------------------------------------------------------


def item_scopes(selector: Selector, type_names: frozenset[str]) -> Iterator[Any]:
    """Elements with ``itemscope`` whose ``itemtype`` names one of ``type_names`` and which are
    not a property of another item (a related product is ``itemprop="isRelatedTo"``)."""
    root = root_of(selector)
    if not is_element(root):
        return
    for element in root.xpath("//*[@itemscope]"):
        if element.get("itemprop") is not None or not item_types(element) & type_names:
            continue
        # A product card in a carousel or a sidebar is another product.
        if any(is_element(a) and _skipped(a) for a in element.iterancestors()):
            continue
        yield element


def item_types(element: Any) -> set[str]:
    return {t.rstrip("/").rsplit("/", 1)[-1] for t in (element.get("itemtype") or "").split()}


def item_properties(scope: Any) -> Iterator[tuple[str, Any]]:
    """(name, element) for each property that belongs to ``scope`` itself, in document order:
    nested items' own properties are theirs, not ``scope``'s."""
    stack: list[tuple[Any, int]] = [(child, 1) for child in reversed(list(scope))]
    while stack:
        element, depth = stack.pop()
        if not is_element(element) or depth > MAX_DEPTH:
            continue
        for name in (element.get("itemprop") or "").split():
            yield name, element
        if element.get("itemscope") is None:
            stack.extend((child, depth + 1) for child in reversed(list(element)))


_URL_VALUED = {"a": "href", "link": "href", "area": "href", "img": "src", "source": "src"}


def property_value(element: Any) -> str:
    """A microdata property's value: ``content`` first, then what the element type holds."""
    content = element.get("content")
    if content is not None:
        return str(content).strip()
    tag = element.tag.lower()
    if tag in _URL_VALUED:
        return str(element.get(_URL_VALUED[tag]) or "").strip()
    if tag in ("data", "meter") and element.get("value") is not None:
        return str(element.get("value")).strip()
    if tag == "time" and element.get("datetime") is not None:
        return str(element.get("datetime")).strip()
    return text_of(element)
