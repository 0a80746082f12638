"""The price a shopper sees: candidates in the page's buy box, scored.

Where structured data is missing or wrong, the price is read from the visible page the way a
shopper finds it: next to the product's title (the main ``h1``) and its add-to-cart button, in
an element whose class, id or ``itemprop`` says price. Not every price there is the price:

* a struck-through price (``<s>``, ``<del>``, ``line-through``) or one marked old / was /
  regular / list / RRP is the **list** price;
* a per-unit price ("/kg", "per m²"), a monthly **instalment**, a **shipping** cost or a
  **saving** ("-18%", "you save") is not the product's price;
* a price inside a link, a product card or a carousel is **another product**'s.

Each candidate gets a score: a price property (``itemprop="price"``), a currency in its text,
a class that says current / sale / final, and closeness (in the tree) to the title and the
add-to-cart button add to it. The best current price wins; ``strong`` says whether it is
anchored to the product (close to its title or button) or the only price the page shows.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal

from selectolax.lexbor import LexborHTMLParser, LexborNode

from producers.extractors.base import PriceCandidate
from producers.extractors.dom import SKIPPED_MARKER_WORDS, SKIPPED_TAGS, attr, collapse, markers
from producers.extractors.values import currency_in_text, single_price_text

_PRICE_WORDS = ("price", "prc", "preis", "prix", "precio", "preco", "prezzo", "cena", "pris")
PRICE_CSS = ", ".join(
    [
        "[itemprop*=price i]",
        "[data-price]",
        *(f'[class*="{w}" i], [id*="{w}" i]' for w in _PRICE_WORDS),
    ]
)
MAX_PRICE_TEXT = 80
MAX_CANDIDATES = 400
# The product's own price comes before the grids of other products on real pages; a page
# whose first 80 prices are all far from its title has no price a rule could trust anyway.
MAX_WHOLE_PAGE_CANDIDATES = 80
MAX_WALK = 60
MAX_BUTTONS_EXAMINED = 60
# An add-to-cart button this close (tree steps) to the buy box's price or title is its own.
BUTTON_REACH = 12


def vocabulary(words: str) -> frozenset[str]:
    return frozenset(words.split())


# Class / id words (split on case, '-' and '_') that say what a price is.
_LIST_TOKENS = vocabulary(
    "old was before regular list original strike striked strikethrough crossed through rrp "
    "msrp uvp srp compare previous normal instead retail reference prev full"
)
_LIST_JOINED = re.compile(
    r"oldprice|wasprice|listprice|regularprice|originalprice|strikethrough|crossedout|"
    r"compareat|beforeprice|prevprice|fullprice|retailprice"
)
_CURRENT_TOKENS = vocabulary(
    "sale special final current now actual offer promo deal our main selling"
)
_UNIT_TOKENS = vocabulary("unit per baseprice base grundpreis")
_INSTALMENT_TOKENS = vocabulary(
    "instalment installment installments monthly month finance financing credit klarna afterpay emi"
)
_SHIPPING_TOKENS = vocabulary("shipping ship delivery postage freight versand")
_SAVING_TOKENS = vocabulary("save saving savings discount percent badge off bonus")
_OTHER_PRODUCT_TOKENS = vocabulary("card tile tiles plp productlist listing teaser thumbnail thumb")

# Words in or right next to a price that say what it is.
_LIST_WORDS = (
    r"was|rrp|msrp|uvp|statt|anstatt|avant|antes|before|regular|normal|list price|retail|"
    r"originally|instead of|prix conseillé|precio normal|vorher|ehemals|prezzo consigliato|"
    r"unverb\. preisempf\.|preisempfehlung|list|typical price"
)
_LIST_BEFORE = re.compile(rf"(?<!\w)({_LIST_WORDS})\s*:?\s*$", re.IGNORECASE)
_LIST_AT_START = re.compile(rf"^\s*({_LIST_WORDS})(?!\w)", re.IGNORECASE)
_INSTALMENT_LABEL = re.compile(
    r"/\s*(mo|month|mes|mois|monat|mese|mies)\b|per month|a month|monthly|mensual|mensuel|"
    r"monatlich|\d\s*x(?!\w)|(?<!\w)x\s*\d|cuotas|parcelas|ratenzahlung",
    re.IGNORECASE,
)
_UNIT_LABEL = re.compile(
    r"/\s*(\d+\s*)?(kg|g|l|ml|cl|m|m2|m²|m³|lb|oz|st|stk|unit|item|piece|each|pc)(?!\w)|"
    r"(?<!\w)per\s+(kg|g|l|m|m²|unit|item|piece|100)|(?<!\w)pro\s+(kg|l|m|stück)",
    re.IGNORECASE,
)
_SHIPPING_LABEL = re.compile(
    r"shipping|delivery|postage|versand|livraison|envío|envio|spedizione|doprava|dostawa|"
    r"доставка|배송",
    re.IGNORECASE,
)
_SAVING_LABEL = re.compile(
    r"%|(?<!\w)save(?!\w)|you save|ahorra|économisez|sparen|risparmi|oszczędzasz|bonus|"
    r"cashback",
    re.IGNORECASE,
)
_SAVING_BEFORE = re.compile(
    r"(save|you save|ahorra|économisez|sparen|risparmi|bonus|cashback)\s*:?\s*$", re.IGNORECASE
)
_SHIPPING_BEFORE = re.compile(
    r"(\+|shipping|delivery|postage|versand|livraison|envío|spedizione)\s*:?\s*$",
    re.IGNORECASE,
)

_CART_CSS = (
    'button, input[type="submit" i], input[type="button" i], '
    '[class*="cart" i], [id*="cart" i], [class*="basket" i], [id*="basket" i], '
    '[class*="buy" i], [id*="buy" i], [class*="bag" i]'
)
_CART_WORDS = re.compile(
    r"add.?to.?(cart|bag|basket|trolley)|addto(cart|bag|basket)|buy.?(it.?)?now|buy.?button|"
    r"in den (warenkorb|einkaufswagen)|warenkorb|ajouter au panier|añadir al carrito|"
    r"agregar al carrito|aggiungi al carrello|adicionar ao carrinho|comprar|"
    r"in winkelwagen|do koszyka|do košíka|do košíku|do kosárba|sepete ekle|в корзину|"
    r"купить|кошик|장바구니|구매하기|カートに入れる|加入购物车|立即购买|הוסף לסל|أضف إلى السلة",
    re.IGNORECASE,
)
_DISABLED = re.compile(r"(?<![a-z])disabled(?![a-z])|unavailable|sold.?out", re.IGNORECASE)

_LAST_NUMBER = re.compile(r"\d(?!.*\d)", re.DOTALL)
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_TOKEN_SPLIT = re.compile(r"[^a-z0-9]+")


def tokens(text: str) -> set[str]:
    return set(_TOKEN_SPLIT.split(_CAMEL.sub("-", text).lower())) - {""}


@dataclass
class _Found:
    node: LexborNode
    candidate: PriceCandidate
    order: int


@dataclass
class BuyBox:
    """What the visible page shows about the main product's price."""

    candidates: list[PriceCandidate] = field(default_factory=list)
    best: PriceCandidate | None = None
    strong: bool = False
    list_prices: set[Decimal] = field(default_factory=set)
    region: LexborNode | None = None
    add_to_cart: list[LexborNode] = field(default_factory=list)
    title: LexborNode | None = None
    sells: bool = False  # an enabled add-to-cart button belongs to this buy box


def _role(node: LexborNode, text: str, context: str) -> tuple[str, str]:
    """(role, why) of the price ``node`` shows, from its tags, classes and words."""
    chain = [node]
    parent = node.parent
    while parent is not None and len(chain) < 4 and parent.tag not in ("body", "html"):
        chain.append(parent)
        parent = parent.parent
    for level, element in enumerate(chain):
        tag = element.tag or ""
        if tag in ("s", "del", "strike") or "line-through" in attr(element, "style"):
            return "list", f"struck through (<{tag}>)"
        if any("strike" in name and value != "false" for name, value in element.attributes.items()):
            return "list", "marked struck through (attribute)"
        names = markers(element)
        words = tokens(names)
        joined = names.lower()
        if words & _LIST_TOKENS or _LIST_JOINED.search(joined.replace("-", "").replace("_", "")):
            return "list", f"marked as a former price ({names.strip()[:40]})"
        if level <= 2:
            for role, vocabulary in (
                ("unit", _UNIT_TOKENS),
                ("instalment", _INSTALMENT_TOKENS),
                ("shipping", _SHIPPING_TOKENS),
                ("saving", _SAVING_TOKENS),
            ):
                if words & vocabulary:
                    return role, f"marked as {role} ({names.strip()[:40]})"
        if level == 0 and words & _CURRENT_TOKENS:
            break
    struck = node.css_first("s, del, strike")
    if struck is not None and collapse(struck.text(deep=True)) == text:
        return "list", "struck through (<s>/<del> inside)"
    at = context.find(text)
    before = context[:at][-30:] if at >= 0 else ""
    after = context[at + len(text) :][:20] if at >= 0 else ""
    # Words between an earlier number and this price label the earlier one ("£4.95 shipping
    # £34.99"), unless they end with a colon ("£49.99 Now: £34.99").
    earlier = _LAST_NUMBER.search(before)
    if earlier is not None:
        label = before[earlier.end() :]
        before = label if label.rstrip().endswith(":") else ""
    if _LIST_AT_START.search(text) or _LIST_BEFORE.search(before):
        return "list", "labelled as a former price"
    if _INSTALMENT_LABEL.search(f"{before[-8:]} {text} {after}"):
        return "instalment", "labelled as an instalment"
    if _UNIT_LABEL.search(f"{text} {after}"):
        return "unit", "labelled as a unit price"
    if _SAVING_LABEL.search(text) or _SAVING_BEFORE.search(before):
        return "saving", "a saving or a percentage"
    if _SHIPPING_LABEL.search(text) or _SHIPPING_BEFORE.search(before):
        return "shipping", "labelled as shipping"
    return "current", ""


def _other_product(node: LexborNode, title_chain: dict[int, int]) -> str:
    """Why ``node`` belongs to another product's card, or "". A card that holds the page's
    title is the page's own product."""
    parent: LexborNode | None = node
    steps = 0
    while parent is not None and steps < MAX_WALK and parent.tag not in ("body", "html"):
        if parent.mem_id in title_chain:
            return ""
        if parent.tag == "a" and "href" in parent.attributes:
            return "inside a link (a product card)"
        if steps > 0 and tokens(markers(parent)) & _OTHER_PRODUCT_TOKENS:
            return "inside a product card or grid"
        parent = parent.parent
        steps += 1
    return ""


def _distances(anchor: LexborNode | None) -> dict[int, int]:
    """Tree distance from ``anchor`` up to each of its ancestors (by lexbor node id)."""
    if anchor is None:
        return {}
    found: dict[int, int] = {}
    node: LexborNode | None = anchor
    depth = 0
    while node is not None and depth < MAX_WALK:
        found[node.mem_id] = depth
        if node.tag in ("body", "html"):
            break
        node = node.parent
        depth += 1
    return found


def _distance(node: LexborNode, chain: dict[int, int]) -> int | None:
    up = 0
    current: LexborNode | None = node
    while current is not None and up < MAX_WALK:
        if current.mem_id in chain:
            if current.tag in ("body", "html"):
                return None  # only related through the whole page
            return up + chain[current.mem_id]
        current = current.parent
        up += 1
    return None


_REGION_SKIP_TAGS = SKIPPED_TAGS - {"select", "option", "datalist", "svg", "iframe"}
_REGION_SKIP_MARKERS = re.compile(
    "|".join(re.escape(w) for w in SKIPPED_MARKER_WORDS if w != "variant"), re.IGNORECASE
)


def _not_this_product(node: LexborNode) -> bool:
    """True when ``node`` sits in site chrome, a carousel, reviews or a hidden part."""
    current: LexborNode | None = node
    steps = 0
    while current is not None and steps < MAX_WALK and current.tag not in ("body", "html"):
        attributes = current.attributes
        if current.tag in _REGION_SKIP_TAGS or "hidden" in attributes:
            return True
        if attributes.get("aria-hidden") == "true":
            return True
        if _REGION_SKIP_MARKERS.search(markers(current)):
            return True
        current = current.parent
        steps += 1
    return False


def main_title(tree: LexborHTMLParser, hint: str | None) -> LexborNode | None:
    """The page's product title: the ``h1`` whose words best match ``hint`` (the structured
    title or og:title), else the first visible ``h1``."""
    headings = [h for h in tree.css("h1") if not _not_this_product(h)]
    if not headings:
        return None
    if hint and len(headings) > 1:
        wanted = tokens(hint)

        def overlap(node: LexborNode) -> int:
            return len(wanted & tokens(node.text(deep=True)))

        best = max(headings, key=overlap)
        if overlap(best) > 0:
            return best
    return headings[0]


def add_to_cart_buttons(
    tree: LexborHTMLParser, title_chain: dict[int, int] | None = None
) -> list[LexborNode]:
    """The page's add-to-cart buttons, not those of other products' cards."""
    found = []
    # The page's own button comes before the grids of other products' cards.
    for node in tree.css(_CART_CSS)[:MAX_BUTTONS_EXAMINED]:
        label = " ".join(
            (
                collapse(node.text(deep=True))[:60],
                attr(node, "value"),
                attr(node, "name"),
                attr(node, "title"),
                attr(node, "aria-label"),
                markers(node),
            )
        )
        if (
            _CART_WORDS.search(label)
            and not _not_this_product(node)
            and not _other_product(node, title_chain or {})
        ):
            found.append(node)
            if len(found) >= 8:
                break
    return found


def is_enabled(button: LexborNode) -> bool:
    attributes = button.attributes
    if "disabled" in attributes or attributes.get("aria-disabled") == "true":
        return False
    return not _DISABLED.search(markers(button))


def _text(node: LexborNode) -> str:
    return collapse(node.text(deep=True))


def _candidate(
    node: LexborNode,
    seen: set[int],
    declared_currency: str | None,
    title_chain: dict[int, int],
    button_chain: dict[int, int],
) -> PriceCandidate | None:
    """``node`` as a scored price candidate; None when it shows no single price."""
    if node.mem_id in seen or node.tag in SKIPPED_TAGS or node.tag in ("meta", "input"):
        return None
    seen.add(node.mem_id)
    text = _text(node)
    if not text or len(text) > MAX_PRICE_TEXT or not any(c.isdigit() for c in text):
        return None
    amount, currency = single_price_text(text, declared_currency)
    if amount is None:
        return None
    role, why = "other product", _other_product(node, title_chain)
    if not why:
        if _not_this_product(node):
            return None
        parent = node.parent
        context = _text(parent) if parent is not None else text
        context = context if len(context) <= 2 * MAX_PRICE_TEXT else text
        role, why = _role(node, text, context)
    score = 1.0
    notes = []
    if "price" in attr(node, "itemprop").lower():
        score += 2
        notes.append("itemprop=price")
    if currency_in_text(text) is not None:
        score += 1
        notes.append("currency shown")
    if tokens(markers(node)) & _CURRENT_TOKENS:
        score += 1
        notes.append("marked current/sale")
    distances = [
        d for d in (_distance(node, title_chain), _distance(node, button_chain)) if d is not None
    ]
    if distances:
        nearest = min(distances)
        score += max(0.0, 4.0 * (1 - nearest / 14))
        notes.append(f"{nearest} steps from the title/button")
    note = ", ".join(notes) + (f"; {role}: {why}" if role != "current" else "")
    return PriceCandidate(amount, currency, "visible", round(score, 2), role, note)


def _scopes(
    tree: LexborHTMLParser, anchors: list[LexborNode], whole_page: bool
) -> list[LexborNode]:
    """Where to look for the product's price, nearest first: the anchors' ancestors a few
    levels up, widening; then the whole page. A price CSS query inside a small subtree is
    cheap; scoring every price of a 200 KB page (its product grid) is not."""
    scopes: list[LexborNode] = []
    for levels in _SCOPE_LEVELS:
        for anchor in anchors:
            node: LexborNode | None = anchor
            for _ in range(levels):
                parent = node.parent if node is not None else None
                if parent is None or parent.tag in ("body", "html"):
                    break
                node = parent
            if node is not None and all(node.mem_id != s.mem_id for s in scopes):
                scopes.append(node)
    body = tree.body
    if body is not None and (whole_page or not anchors):
        scopes.append(body)
    return scopes


_SCOPE_LEVELS = (3, 6, 10, 14)


def read_buy_box(
    tree: LexborHTMLParser,
    title_hint: str | None,
    declared_currency: str | None,
    whole_page: bool = True,
) -> BuyBox:
    """The visible price candidates near the product's title and add-to-cart button, scored
    (the whole page's when nothing is near and ``whole_page``), and the buy box around the
    best. Without ``whole_page`` (structured data already gave a price: the buy box is only
    asked to confirm it) a page with a title or a button is searched near them only."""
    title = main_title(tree, title_hint)
    title_chain = _distances(title)
    buttons = add_to_cart_buttons(tree, title_chain)
    button_chain = _distances(buttons[0]) if buttons else {}
    anchors = [a for a in (title, buttons[0] if buttons else None) if a is not None]
    if not anchors and not whole_page:
        return BuyBox()  # nothing to anchor a confirmation to
    found: list[_Found] = []
    box = BuyBox(add_to_cart=buttons, title=title)
    seen: set[int] = set()
    order = 0
    for scope in _scopes(tree, anchors, whole_page):
        if any(f.candidate.role == "current" for f in found):
            break
        whole = scope.tag == "body"
        for node in scope.css(PRICE_CSS)[: MAX_WHOLE_PAGE_CANDIDATES if whole else MAX_CANDIDATES]:
            order += 1
            candidate = _candidate(node, seen, declared_currency, title_chain, button_chain)
            if candidate is not None:
                found.append(_Found(node, candidate, order))
                if candidate.role == "list":
                    box.list_prices.add(candidate.amount)
    current = [f for f in found if f.candidate.role == "current"]
    box.candidates = [f.candidate for f in found]
    anchor = title or (buttons[0] if buttons else None)
    if current:
        best = max(current, key=lambda f: (f.candidate.score, -f.order))
        box.best = best.candidate
        distinct = {f.candidate.amount for f in current}
        box.strong = best.candidate.score >= 4.0 or (
            len(distinct) == 1 and "currency shown" in best.candidate.note
        )
        anchor = best.node
    if anchor is None:
        return box
    # Without a price, the buy box is the title's (or the button's) close surroundings.
    box.region = _region(anchor, title)
    anchor_chain = _distances(anchor)
    box.sells = any(
        is_enabled(button)
        and min(
            (
                d
                for d in (_distance(button, anchor_chain), _distance(button, title_chain))
                if d is not None
            ),
            default=BUTTON_REACH + 1,
        )
        <= BUTTON_REACH
        for button in buttons
    )
    return box


def _region(price: LexborNode, title: LexborNode | None) -> LexborNode:
    """The buy box: the smallest element holding the price and the title, when that is not
    the whole page; else the price's (or, without a price, the title's) close surroundings."""
    if title is not None and title.mem_id != price.mem_id:
        chain = _distances(title)
        current: LexborNode | None = price
        steps = 0
        while current is not None and steps < MAX_WALK:
            if current.mem_id in chain:
                if current.tag not in ("body", "html") and len(_text(current)) <= 4000:
                    return current
                break
            current = current.parent
            steps += 1
    region = price
    for _ in range(4):
        parent = region.parent
        if parent is None or parent.tag in ("body", "html") or len(_text(parent)) > 2000:
            break
        region = parent
    return region


def current_price_in(element: LexborNode, declared: str | None) -> PriceCandidate | None:
    """The first current price inside ``element`` when it shows several (a sale price beside
    the struck-through one): for a price property whose value holds both."""
    for node in element.css("*"):
        text = _text(node)
        if not text or len(text) > MAX_PRICE_TEXT:
            continue
        amount, currency = single_price_text(text, declared)
        if amount is None:
            continue
        role, _ = _role(node, text, text)
        if role == "current":
            return PriceCandidate(amount, currency, "visible", note="current price in a property")
    return None
