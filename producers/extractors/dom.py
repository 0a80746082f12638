"""Reading the parsed HTML tree (lexbor, through selectolax): which parts talk about the page's
own product, their visible text, and microdata / RDFa item properties.

Queries run as CSS inside lexbor (C) wherever they can: a Python walk over every element of a
200 KB page costs more than parsing it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from selectolax.lexbor import LexborHTMLParser, LexborNode

MAX_DEPTH = 200

# Subtrees whose text is not about the page's own product.
SKIPPED_TAGS = frozenset(
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
# Class / id words of regions that hold other products, site chrome or per-variant state.
SKIPPED_MARKER_WORDS = (
    "related",
    "recommend",
    "carousel",
    "similar",
    "upsell",
    "up-sell",
    "crosssell",
    "cross-sell",
    "also-bought",
    "alsobought",
    "also-viewed",
    "alsoviewed",
    "recently-viewed",
    "recentlyviewed",
    "you-may",
    "newsletter",
    "cookie",
    "menu",
    "breadcrumb",
    "site-header",
    "site-footer",
    "sidebar",
    "variant",
    "swatch",
    "review",
)
_SKIPPED_MARKERS = re.compile("|".join(re.escape(w) for w in SKIPPED_MARKER_WORDS), re.IGNORECASE)
_HIDDEN_STYLE = re.compile(r"display\s*:\s*none|visibility\s*:\s*hidden", re.IGNORECASE)

_SKIPPED_CSS = ", ".join(
    [
        *sorted(SKIPPED_TAGS - {"head"}),
        "[hidden]",
        '[aria-hidden="true"]',
        '[style*="display:none" i]',
        '[style*="display: none" i]',
        '[style*="visibility:hidden" i]',
        '[style*="visibility: hidden" i]',
        *(f'[class*="{w}" i], [id*="{w}" i]' for w in SKIPPED_MARKER_WORDS),
    ]
)


def attr(node: LexborNode, name: str) -> str:
    value = node.attributes.get(name)
    return value if isinstance(value, str) else ""


def markers(node: LexborNode) -> str:
    """The words a page's author named an element by: its class and id."""
    return f"{attr(node, 'class')} {attr(node, 'id')}"


def is_skipped(node: LexborNode) -> bool:
    """True for an element whose subtree is not about the page's own product."""
    tag = node.tag or ""
    if tag in SKIPPED_TAGS:
        return True
    attributes = node.attributes
    if "hidden" in attributes or attributes.get("aria-hidden") == "true":
        return True
    if _HIDDEN_STYLE.search(attr(node, "style")):
        return True
    return bool(_SKIPPED_MARKERS.search(markers(node)))


def ancestors(node: LexborNode) -> Iterator[LexborNode]:
    parent = node.parent
    depth = 0
    while parent is not None and depth < MAX_DEPTH:
        if parent.tag in ("html", "-undef", None) or parent.is_document_node:
            return
        yield parent
        parent = parent.parent
        depth += 1


def in_skipped_region(node: LexborNode) -> bool:
    return is_skipped(node) or any(is_skipped(a) for a in ancestors(node))


def collapse(text: str) -> str:
    return " ".join(text.split())


def visible_text(node: LexborNode, without_links: bool = False) -> str:
    """The text of ``node`` without its skipped parts (scripts, pickers, carousels, hidden);
    ``without_links`` also drops links' text (a link names another page or product)."""
    copy = node.clone()
    if copy is None:
        return ""
    for skipped in copy.css(_SKIPPED_CSS + (", a[href]" if without_links else "")):
        skipped.decompose()
    return collapse(copy.text(deep=True, separator=" "))


def main_text(tree: LexborHTMLParser) -> str:
    """The visible text of the page's body, without navigation, footers, hidden parts, variant
    pickers and product carousels: the text that talks about this page's product."""
    body = tree.body
    if body is None:
        return ""
    return visible_text(body)


# --- Microdata and RDFa ----------------------------------------------------------------------


def _type_names(value: str) -> set[str]:
    """ "https://schema.org/Product" or "schema:Product" -> {"Product"}."""
    return {t.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1] for t in value.split()}


def item_types(node: LexborNode) -> set[str]:
    return _type_names(attr(node, "itemtype") or attr(node, "typeof"))


def is_item(node: LexborNode) -> bool:
    attributes = node.attributes
    return "itemscope" in attributes or "typeof" in attributes


_NOT_RDFA_PREFIXES = ("og:", "product:", "fb:", "twitter:", "article:", "al:")


def property_names(node: LexborNode) -> list[str]:
    """Microdata ``itemprop`` names, or RDFa ``property`` names without their vocabulary
    ("schema:price", "http://schema.org/price" -> "price")."""
    names = attr(node, "itemprop")
    if not names:
        rdfa = attr(node, "property")
        # OpenGraph's meta tags use the same attribute; they are not item properties.
        if rdfa and not rdfa.startswith(_NOT_RDFA_PREFIXES):
            names = rdfa
    return [n.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1] for n in names.split()]


def item_scopes(tree: LexborHTMLParser, type_names: frozenset[str]) -> Iterator[LexborNode]:
    """Items typed one of ``type_names`` that are not a property of another item (a related
    product is ``itemprop="isRelatedTo"``) nor inside a carousel or a sidebar."""
    for node in tree.css("[itemscope], [typeof]"):
        if attr(node, "itemprop") or attr(node, "property"):
            continue
        if not item_types(node) & type_names:
            continue
        if in_skipped_region(node):
            continue
        yield node


def item_properties(scope: LexborNode) -> Iterator[tuple[str, LexborNode]]:
    """(name, element) for each property that belongs to ``scope`` itself, in document order:
    nested items' own properties are theirs, not ``scope``'s."""
    stack: list[tuple[LexborNode, int]] = [(c, 1) for c in reversed(list(scope.iter()))]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            continue
        for name in property_names(node):
            yield name, node
        if not is_item(node):
            stack.extend((c, depth + 1) for c in reversed(list(node.iter())))


_URL_VALUED = {"a": "href", "link": "href", "area": "href", "img": "src", "source": "src"}


def property_value(node: LexborNode) -> str:
    """A property's value: ``content`` first, then what the element type holds."""
    attributes = node.attributes
    content = attributes.get("content")
    if isinstance(content, str):
        return content.strip()
    tag = node.tag or ""
    if tag in _URL_VALUED:
        return attr(node, _URL_VALUED[tag]).strip() or attr(node, "resource").strip()
    if tag in ("data", "meter") and isinstance(attributes.get("value"), str):
        return attr(node, "value").strip()
    if tag == "time" and isinstance(attributes.get("datetime"), str):
        return attr(node, "datetime").strip()
    return collapse(node.text(deep=True, separator=" "))
