"""The hybrid-search query set over a demo catalog, and how it is scored (issue 17).

Families, each generated from the catalog's products with a fixed seed:

- ``clean``: the canonical phrasings the demo model was trained on ("a red dress"), one per
  category x colour present; relevant: that category and colour.
- ``clean+pattern``: "a red striped dress", one per category x colour x pattern present;
  relevant: all three.
- ``typo``: "red dress" with one edit in one word (a letter dropped, two swapped, one
  replaced or doubled: "red dres", "rde dress"); relevant: category and colour.
- ``variant``: joined, split and British spellings a shopper types: "blue tshirt",
  "blue t shirt", "grey dress"; relevant: category and colour.
- ``synonym``: a shopper's word for the category ("red pants", "black purse", "white tee",
  "blue trainers"); relevant: category and colour.
- ``sku``: a product's SKU as printed, lower-cased, or without dashes; relevant: that product.
- ``brand``: brand and category ("Kestrel dress", "Northwind sneakers"), one per pair present;
  relevant: that brand and category.

Scored per family: top-1 (the first hit is relevant) and precision@5 (``|top-5 ∩ relevant| /
min(5, |relevant|)``). The searcher is any ``(query, k) -> ids`` callable, so the same set
scores the in-process stack of ``benchmarks/quality.py`` and, later, a server.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from clipsearch.apps.demo.catalog import Product, query_for

#: Words shoppers use for a category that are not the catalog's category name.
SHOPPER_SYNONYMS = {"trousers": "pants", "sneaker": "trainers", "handbag": "purse", "t-shirt": "tee"}
_PLURAL_QUERY = {"sneaker": "sneakers", "boot": "boots"}

#: Ordered ids for a query; ``k`` is the page size.
Search = Callable[[str, int], list[str]]


@dataclass(frozen=True)
class Query:
    family: str
    text: str
    relevant: frozenset[str]


@dataclass
class FamilyFigures:
    family: str
    queries: int
    top1: float
    precision_at_5: float
    misses: list[str] = field(default_factory=list)


def build_queries(products: Sequence[Product], seed: int = 0) -> list[Query]:
    """Every family's queries for ``products`` (module docstring), deterministic in ``seed``."""
    rng = np.random.default_rng([seed, 17])
    by_pair: dict[tuple[str, str], set[str]] = {}
    by_triple: dict[tuple[str, str, str], set[str]] = {}
    by_brand: dict[tuple[str, str], set[str]] = {}
    for p in products:
        by_pair.setdefault((p.category, p.color), set()).add(p.id)
        by_triple.setdefault((p.category, p.color, p.pattern), set()).add(p.id)
        if p.brand:
            by_brand.setdefault((p.brand, p.category), set()).add(p.id)
    out: list[Query] = []
    for (category, color), ids in sorted(by_pair.items()):
        out.append(Query("clean", query_for(category, color), frozenset(ids)))
    for (category, color, pattern), ids in sorted(by_triple.items()):
        out.append(Query("clean+pattern", query_for(category, color, pattern), frozenset(ids)))
    for (category, color), ids in sorted(by_pair.items()):
        noun = _PLURAL_QUERY.get(category, category)
        words = [color, noun]
        which = int(rng.integers(2))
        words[which] = misspell(words[which], rng)
        out.append(Query("typo", " ".join(words), frozenset(ids)))
    for (category, color), ids in sorted(by_pair.items()):
        noun = _PLURAL_QUERY.get(category, category)
        if category == "t-shirt":
            out += [
                Query("variant", f"{'grey' if color == 'gray' else color} tshirt", frozenset(ids)),
                Query("variant", f"{color} t shirt", frozenset(ids)),
            ]
        elif color == "gray":
            out.append(Query("variant", f"grey {noun}", frozenset(ids)))
    for (category, color), ids in sorted(by_pair.items()):
        if category in SHOPPER_SYNONYMS:
            out.append(Query("synonym", f"{color} {SHOPPER_SYNONYMS[category]}", frozenset(ids)))
    skus = [p for p in products if p.sku]
    for i in rng.choice(len(skus), size=min(60, len(skus)), replace=False) if skus else []:
        p = skus[int(i)]
        form = int(rng.integers(3))
        text = p.sku if form == 0 else p.sku.lower() if form == 1 else p.sku.replace("-", "")
        out.append(Query("sku", text, frozenset({p.id})))
    for (brand, category), ids in sorted(by_brand.items()):
        out.append(Query("brand", f"{brand} {_PLURAL_QUERY.get(category, category)}", frozenset(ids)))
    return out


def misspell(word: str, rng: np.random.Generator) -> str:
    """One edit, never of the first letter: dropped, swapped with the next, replaced or doubled."""
    if len(word) < 3:
        return word
    i = int(rng.integers(1, len(word)))
    kind = int(rng.integers(4))
    if kind == 0:
        return word[:i] + word[i + 1 :]
    if kind == 1 and i < len(word) - 1 and word[i] != word[i + 1]:  # swapping "ss" changes nothing
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    if kind in (1, 2):
        options = [c for c in "abcdefghijklmnopqrstuvwxyz" if c != word[i]]
        return word[:i] + options[int(rng.integers(len(options)))] + word[i + 1 :]
    return word[:i] + word[i] + word[i:]


def score(queries: Sequence[Query], search: Search, k: int = 5) -> dict[str, FamilyFigures]:
    """family -> its top-1 and precision@k over ``queries`` searched with ``search``."""
    results: dict[str, list[tuple[bool, float, str]]] = {}
    for query in queries:
        ids = search(query.text, k)
        first = bool(ids) and ids[0] in query.relevant
        precision = len(query.relevant.intersection(ids[:k])) / min(k, len(query.relevant))
        results.setdefault(query.family, []).append((first, precision, f"{query.text!r} -> {ids[:3]}"))
    return {
        family: FamilyFigures(
            family,
            len(rows),
            sum(r[0] for r in rows) / len(rows),
            float(np.mean([r[1] for r in rows])),
            [r[2] for r in rows if not r[0]],
        )
        for family, rows in results.items()
    }
