"""Text analysis for the lexical index: the one function that turns text into terms.

The same :func:`terms` runs on stored values and on queries, so an index term and a query
term meet exactly when a shopper's word and the shop's word normalise alike. In order:

1. Unicode compatibility form, accents removed, case folded (``Café`` -> ``cafe``).
2. Words: runs of letters and digits; a word joined by ``-``, ``/``, ``'`` or ``.`` yields
   its parts *and* the parts joined (``t-shirt`` -> ``t``, ``shirt``, ``tshirt``;
   ``SAL-SN-733103`` -> ``sal``, ``sn``, ``733103``, ``salsn733103``), so joined, split and
   hyphenated spellings of a compound all meet.
3. English stop words dropped (Lucene's list): they match every product, cost every query
   a scan of the whole index, and rank nothing.
4. Spelling variants mapped to one form (:data:`VARIANTS`: British/American pairs such as
   grey/gray, colour/color), then plurals reduced (:func:`stem`).

Typos are not handled here but by the lexical index's vocabulary (edit distance over the
terms that exist), so analysis stays a pure function of the text.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterator

#: Lucene's English stop words (``EnglishAnalyzer.ENGLISH_STOP_WORDS_SET``).
STOP_WORDS = frozenset(
    "a an and are as at be but by for if in into is it no not of on or such that the their then "
    "there these they this to was will with".split()
)

#: One spelling for words English writes two ways (British -> American), applied on both sides.
#: A general list, not the demo's words; extend it per language. Measured in docs/hybrid.md.
VARIANTS: dict[str, str] = {
    "grey": "gray",
    "greys": "grays",
    "colour": "color",
    "colours": "colors",
    "coloured": "colored",
    "jewellery": "jewelry",
    "favourite": "favorite",
    "centre": "center",
    "fibre": "fiber",
    "metre": "meter",
    "litre": "liter",
    "aluminium": "aluminum",
    "pyjamas": "pajamas",
    "moustache": "mustache",
    "tyre": "tire",
    "catalogue": "catalog",
    "cosy": "cozy",
    "plough": "plow",
    "mould": "mold",
    "odour": "odor",
    "harbour": "harbor",
    "armour": "armor",
    "organise": "organize",
    "organiser": "organizer",
    "personalised": "personalized",
    "practise": "practice",
    "woollen": "woolen",
    "travelling": "traveling",
    "cheque": "check",
    "chequered": "checkered",
}

#: English plurals a suffix rule gets wrong (``scarves`` is not ``scarve``).
_IRREGULAR = {
    "scarves": "scarf",
    "knives": "knife",
    "wives": "wife",
    "lives": "life",
    "leaves": "leaf",
    "halves": "half",
    "shelves": "shelf",
    "wolves": "wolf",
    "loaves": "loaf",
    "thieves": "thief",
    "men": "man",
    "women": "woman",
    "feet": "foot",
    "teeth": "tooth",
    "geese": "goose",
    "mice": "mouse",
    "children": "child",
}

_WORD = re.compile(r"[^\W_]+(?:['\u2019./-][^\W_]+)*")
_PART = re.compile(r"[^\W_]+")
#: Longest term kept (longer runs are cut): bounds vocabulary rows and edit-distance work.
MAX_TERM = 40


def fold(text: str) -> str:
    """Compatibility form, accents removed, case folded."""
    if text.isascii():
        return text.lower()
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def stem(word: str) -> str:
    """Plural to singular, by suffix (``dresses`` -> ``dress``, ``berries`` -> ``berry``).

    Only inflection is removed: ``striped`` and ``stripe`` stay apart (a derivational stemmer
    such as Porter's merges more, and wrongly more often on product words like ``shorts``).
    """
    if word in _IRREGULAR:
        return _IRREGULAR[word]
    if len(word) <= 3 or not word.endswith("s") or word.isdigit():
        return word
    if word.endswith(("ss", "us", "is")):
        return word
    if word.endswith("ies") and len(word) > 4 and word[-4] not in "ae":
        return word[:-3] + "y"
    if word.endswith(("sses", "shes", "ches", "xes", "zes")):
        return word[:-2]
    return word[:-1]


@functools.lru_cache(maxsize=65536)
def normalise(word: str) -> str:
    """One folded word's term: its spelling variant mapped, then its plural reduced."""
    word = word[:MAX_TERM]
    return stem(VARIANTS.get(word, word))


def words(text: str) -> Iterator[list[str]]:
    """The folded words of ``text``, each as its list of parts (``t-shirt`` -> ``[t, shirt]``)."""
    for match in _WORD.finditer(fold(text)):
        yield _PART.findall(match.group())


def terms(text: str) -> list[str]:
    """The terms of ``text``, in order, joined compounds after their parts; stop words removed."""
    return list(_cached_terms(text))


@functools.lru_cache(maxsize=4096)
def _cached_terms(text: str) -> tuple[str, ...]:
    """Keyword values (brands, categories, colours) repeat across items: analysed once."""
    return tuple(term for term, _ in spelled_terms(text))


def clear_caches() -> None:
    """Forget analysed words (after changing :data:`VARIANTS` at run time, as an ablation does)."""
    normalise.cache_clear()
    _cached_terms.cache_clear()


def spelled_terms(text: str) -> list[tuple[str, str]]:
    """(term, the folded word it came from) for each term of ``text``: a query word that is not
    in the vocabulary is corrected from both (``dres`` is one edit from ``dress``, its
    plural-stripped ``dre`` two)."""
    out: list[tuple[str, str]] = []
    for parts in words(text):
        out.extend((normalise(p), p[:MAX_TERM]) for p in parts if p not in STOP_WORDS)
        if len(parts) > 1:
            joined = "".join(parts)
            out.append((normalise(joined), joined[:MAX_TERM]))
    return out


def compact(text: str) -> str:
    """A keyword value as exact matching compares it: letters and digits only (``SAL-SN-1`` -> ``SALSN1``)."""
    return "".join(_PART.findall(unicodedata.normalize("NFKC", text)))


def max_edits(term: str) -> int:
    """Typos tolerated in a query term of this length: 0 up to 2 letters, 1 up to 5, else 2.

    Elasticsearch's ``fuzziness: AUTO`` rule; digits are never corrected (a SKU's number, a size).
    """
    if any(c.isdigit() for c in term):
        return 0
    return 0 if len(term) <= 2 else 1 if len(term) <= 5 else 2


def deletes(term: str) -> set[str]:
    """Every string one deletion away from ``term`` (the symmetric-delete key of its typos)."""
    return {term[:i] + term[i + 1 :] for i in range(len(term))}


def edit_distance(a: str, b: str, limit: int) -> int:
    """Optimal string alignment distance (a swap of neighbours is one edit), or ``limit + 1``
    as soon as it must exceed ``limit``."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    previous2: list[int] = []
    previous = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        current = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                current[j] = min(current[j], previous2[j - 2] + 1)
        if min(current) > limit:
            return limit + 1
        previous2, previous = previous, current
    return previous[-1] if previous[-1] <= limit else limit + 1
