"""The word-for-word glossary baseline: learnt from the training pairs, it needs no model.

Each source word goes to the target word it co-occurs with most (Dice score, seen together at
least twice); unknown words, numbers and punctuation are copied. A word keeps its combining
marks: Fon, Ewe and Yoruba write tones on letters that have no precomposed form even in NFC
(`ɔ́`, `ɛ̀`, `ẹ́`), and a regex word character does not include the mark.
"""

from __future__ import annotations

import itertools
import re
import unicodedata
from collections import Counter, defaultdict

from usecases.translation.corpus import nfc

# Letters and digits with the combining marks (U+0300-036F, U+1DC0-1DFF) that follow them.
_WORD = re.compile(r"(?:\w[\u0300-\u036f\u1dc0-\u1dff]*)+|[^\w\s]")

Row = tuple[str, str, str, str]  # (src_lang, tgt_lang, src, tgt)


def words(text: str) -> list[str]:
    return _WORD.findall(nfc(text))


def _is_word(token: str) -> bool:
    """Letters only (tone marks allowed): numbers and punctuation are copied, never learnt."""
    return token[0].isalpha() and all(c.isalpha() or unicodedata.combining(c) for c in token)


def _content(text: str) -> set[str]:
    return {w.lower() for w in words(text) if _is_word(w)}


def _best(
    both: Counter[tuple[str, str]], src_n: Counter[str], tgt_n: Counter[str], reverse: bool
) -> dict[str, str]:
    """Each source word's target word of highest Dice score (ties: the larger word), among
    words seen together at least twice."""
    best: dict[str, tuple[float, str]] = {}
    for (x, y), n in both.items():
        if n < 2:
            continue
        s, t = (y, x) if reverse else (x, y)
        dice = 2 * n / (src_n[s] + tgt_n[t])
        if s not in best or (dice, t) > best[s]:
            best[s] = (dice, t)
    return {s: t for s, (_, t) in sorted(best.items())}


class Glossary:
    """Per direction (`(src_lang, tgt_lang)`), a table source word -> target word."""

    def __init__(self, table: dict[tuple[str, str], dict[str, str]]) -> None:
        self.table = table

    @classmethod
    def fit(cls, rows: list[Row]) -> Glossary:
        """Both directions of every pair in `rows` (one co-occurrence count serves both)."""
        by_pair: dict[tuple[str, str], list[tuple[set[str], set[str]]]] = defaultdict(list)
        for a, b, x, y in rows:
            sx, sy = _content(x), _content(y)
            if (b, a) < (a, b):
                a, b, sx, sy = b, a, sy, sx
            by_pair[(a, b)].append((sx, sy))
        table = {}
        for (a, b), pairs in sorted(by_pair.items()):
            a_n: Counter[str] = Counter()
            b_n: Counter[str] = Counter()
            both: Counter[tuple[str, str]] = Counter()
            for sx, sy in pairs:
                a_n.update(sx)
                b_n.update(sy)
                both.update(itertools.product(sx, sy))
            table[(a, b)] = _best(both, a_n, b_n, reverse=False)
            table[(b, a)] = _best(both, b_n, a_n, reverse=True)
        return cls(table)

    def translate(self, text: str, src: str, tgt: str) -> str:
        table = self.table.get((src, tgt), {})
        out = []
        for w in words(text):
            t = table.get(w.lower())
            if t is None:
                out.append(w)
            else:
                out.append(t.capitalize() if w[:1].isupper() else t)
        return " ".join(out)
