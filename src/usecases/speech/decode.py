"""Decoding for a character CTC speech recogniser: best path, prefix beam search with a
character n-gram language model, and spoken-keyword spotting from the CTC posteriors.

Conventions. A vocabulary is ``labels: list[str]``: index 0 is the CTC blank (label ``""``), the
others are single characters, ``" "`` being the word separator. ``log_probs`` is a ``[T, V]``
array of log-softmax outputs for one utterance, already trimmed to its true length (numpy or a
torch tensor; tensors are detached and moved to the CPU).

Approach.

* ``greedy`` takes the best label per frame, collapses repeats and drops blanks.
* ``CharNgramLM`` is a character n-gram model (default order 5) with *interpolated Kneser-Ney*
  smoothing: one absolute discount per order, ``D = n1 / (n1 + 2 n2)`` (Chen & Goodman), the
  highest order on raw counts and the lower orders on continuation counts (how many distinct
  characters precede an n-gram), bottoming out in a uniform distribution over the characters,
  end of sentence and one "unknown" slot, so that any character has a finite log probability.
  Only the highest-order counts are stored (``to_dict``); everything else is recomputed.
* ``beam_search`` is the CTC prefix beam search: each prefix keeps the log probability of the
  paths ending in a blank and in a non-blank; a repeated character is a new character only after
  a blank. With a language model, each character added to the (space-normalised) text adds
  ``alpha * log P_lm(char | text) + beta``; the cost of a space is charged together with the
  next character, so that a trailing space is never charged and the end-of-sentence term
  ``alpha * log P_lm(</s> | text)`` is taken on the text as it is returned.
* ``spot`` aligns a keyword's CTC topology (characters interleaved with blanks; a blank is
  required between two equal characters) to the best segment of the utterance by Viterbi, with a
  free filler before and after the segment. Each frame of the segment scores
  ``log p(aligned label) - max log p(frame)`` (0 where the best path agrees); the segment with
  the highest total is kept and the confidence is that total divided by the number of keyword
  characters: 0 means the greedy path itself emits the keyword, more negative means less likely.
  Dividing by the characters rather than the frames keeps the score comparable across keywords
  without letting a long run of free blank frames inside a poor alignment dilute it towards 0. Leading and trailing blanks of the
  topology are left to the filler: they could only add non-positive terms, so the reported
  segment runs from the keyword's first character to its last.
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Sequence
from typing import Any

import numpy as np

BOS = "\x02"  # start-of-sentence padding inside the LM (never a label)
EOS = "\x03"  # end of sentence: pass it to `CharNgramLM.logprob` for P(</s> | context)
NEG_INF = float("-inf")
_FORMAT = "usecases.speech.char_ngram_kn/1"
_CACHE_LIMIT = 50_000


def _as_array(log_probs: Any, labels: Sequence[str] | None = None) -> np.ndarray:
    """`log_probs` as a float64 [T, V] numpy array, checked against `labels` when given."""
    if hasattr(log_probs, "detach"):
        log_probs = log_probs.detach().cpu()
    arr = np.asarray(log_probs, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"log_probs must be [T, V], got shape {arr.shape}")
    if labels is not None and arr.shape[1] != len(labels):
        raise ValueError(
            f"log_probs has {arr.shape[1]} labels per frame, vocabulary has {len(labels)}"
        )
    return arr


def _check_labels(labels: Sequence[str]) -> None:
    """Index 0 must be the blank `""`, the others single characters."""
    if not labels or labels[0] != "":
        raise ValueError("labels[0] must be the CTC blank ''")
    bad = [lab for lab in labels[1:] if len(lab) != 1]
    if bad:
        raise ValueError(f"labels other than the blank must be single characters, got {bad!r}")


def _collapse_spaces(text: str) -> str:
    """Runs of spaces collapsed to one, ends stripped."""
    return " ".join(w for w in text.split(" ") if w)


def _lae(a: float, b: float) -> float:
    """log(exp(a) + exp(b)) for scalars, -inf safe."""
    if a == NEG_INF:
        return b
    if b == NEG_INF:
        return a
    if a < b:
        a, b = b, a
    return a + math.log1p(math.exp(b - a))


# --------------------------------------------------------------------------------------------
# Best path


def greedy(log_probs: Any, blank: int = 0) -> list[int]:
    """Best path: the argmax label per frame, repeats collapsed, blanks dropped."""
    arr = _as_array(log_probs)
    out: list[int] = []
    prev = -1
    for k in arr.argmax(axis=1).tolist() if len(arr) else []:
        if k != prev and k != blank:
            out.append(int(k))
        prev = k
    return out


def ids_to_text(ids: Sequence[int], labels: Sequence[str]) -> str:
    """The labels of `ids` joined, runs of spaces collapsed, ends stripped."""
    return _collapse_spaces("".join(labels[int(i)] for i in ids))


# --------------------------------------------------------------------------------------------
# Character n-gram language model


def _normalise(text: str, lowercase: bool) -> str:
    """NFC, optionally lower-cased, whitespace runs collapsed to one space, ends stripped."""
    text = unicodedata.normalize("NFC", text)
    if lowercase:
        text = text.lower()
    return " ".join(text.split())


class CharNgramLM:
    """Character n-gram language model with interpolated Kneser-Ney smoothing.

    Build it with `fit`; `logprob(char, context)` is the natural-log probability of `char`
    (a character, or `EOS`) after `context` (the preceding characters of the sentence).
    Characters never seen in training (nor given as labels) share an "unknown" slot of the
    uniform base distribution: small, never -inf. Training and scored texts are NFC-normalised,
    lower-cased (unless ``lowercase=False``) and whitespace-collapsed; `logprob` takes its
    arguments as they are.
    """

    def __init__(self, order: int, chars: Sequence[str], ngrams: dict[str, int], lowercase: bool):
        """Use `fit` or `from_dict`; `ngrams` maps each highest-order n-gram to its count."""
        if order < 1:
            raise ValueError(f"order must be >= 1, got {order}")
        self.order = int(order)
        self.lowercase = bool(lowercase)
        self.chars: list[str] = sorted(set(chars))
        self.counts: dict[str, int] = {g: int(c) for g, c in sorted(ngrams.items())}
        self._index = {c: i for i, c in enumerate(self.chars)}
        self.eos_index = len(self.chars)
        self.unk_index = len(self.chars) + 1
        self._index[EOS] = self.eos_index
        self.size = len(self.chars) + 2  # characters, end of sentence, unknown
        self._levels: list[dict[str, tuple[np.ndarray, np.ndarray, float, int]]] = []
        self._discounts: list[float] = []
        self._build()
        self._cache: dict[str, np.ndarray] = {}

    # construction -------------------------------------------------------------------------

    @classmethod
    def fit(
        cls,
        texts: Sequence[str],
        order: int = 5,
        *,
        labels: Sequence[str] | None = None,
        lowercase: bool = True,
    ) -> CharNgramLM:
        """Count the order-`order` n-grams of `texts` (padded with `order - 1` start symbols and
        ended with `EOS`). `labels`, when given, adds their characters to the vocabulary."""
        if order < 1:
            raise ValueError(f"order must be >= 1, got {order}")
        chars: set[str] = {lab for lab in labels or [] if lab}
        counts: dict[str, int] = {}
        pad = BOS * (order - 1)
        for raw in texts:
            text = _normalise(raw, lowercase)
            if BOS in text or EOS in text:
                raise ValueError("texts must not contain the LM's control characters \\x02/\\x03")
            chars.update(text)
            seq = pad + text + EOS
            for end in range(order, len(seq) + 1):
                g = seq[end - order : end]
                counts[g] = counts.get(g, 0) + 1
        return cls(order, sorted(chars), counts, lowercase)

    def _build(self) -> None:
        """Per order k: (context -> next-token indices, counts, total, types) and a discount;
        order `order` uses raw counts, lower orders continuation counts."""
        n = self.order
        tables: list[dict[str, int]] = [{} for _ in range(n + 1)]
        tables[n] = self.counts
        for k in range(n - 1, 0, -1):
            lower: dict[str, int] = {}
            for g in tables[k + 1]:
                lower[g[1:]] = lower.get(g[1:], 0) + 1
            tables[k] = lower
        self._levels = [{}]
        self._discounts = [0.0]
        for k in range(1, n + 1):
            values = list(tables[k].values())
            n1 = sum(1 for v in values if v == 1)
            n2 = sum(1 for v in values if v == 2)
            d = n1 / (n1 + 2 * n2) if n1 + 2 * n2 > 0 else 0.5
            self._discounts.append(min(max(d, 0.1), 0.95))
            grouped: dict[str, tuple[list[int], list[float]]] = {}
            for g, c in tables[k].items():
                idx, cnt = grouped.setdefault(g[:-1], ([], []))
                idx.append(self._index.get(g[-1], self.unk_index))
                cnt.append(float(c))
            level: dict[str, tuple[np.ndarray, np.ndarray, float, int]] = {}
            for ctx, (idx, cnt) in grouped.items():
                c_arr = np.asarray(cnt)
                level[ctx] = (np.asarray(idx, dtype=np.int64), c_arr, float(c_arr.sum()), len(idx))
            self._levels.append(level)

    # queries ------------------------------------------------------------------------------

    def index(self, char: str) -> int:
        """Position of `char` (or `EOS`) in `logprobs_next`'s output; unknown -> `unk_index`."""
        return self._index.get(char, self.unk_index)

    def logprobs_next(self, context: str) -> np.ndarray:
        """Log probabilities of every next token after `context`: one per `chars`, then `EOS`,
        then the unknown slot (the probability of each unseen character). Sums to 1 in
        probability. Cached per context (only the last `order - 1` characters matter)."""
        n = self.order - 1
        h = (BOS * n + context)[-n:] if n else ""
        hit = self._cache.get(h)
        if hit is not None:
            return hit
        p = np.full(self.size, 1.0 / self.size)
        for k in range(1, self.order + 1):
            entry = self._levels[k].get(h[len(h) - (k - 1) :] if k > 1 else "")
            if entry is None:
                continue
            idx, cnt, total, types = entry
            d = self._discounts[k]
            new = p * (d * types / total)
            new[idx] += np.maximum(cnt - d, 0.0) / total
            p = new
        out = np.log(p)
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[h] = out
        return out

    def logprob(self, char: str, context: str = "") -> float:
        """Natural-log P(char | context); `char` is one character or `EOS`."""
        if len(char) != 1:
            raise ValueError(f"logprob takes one character (or EOS), got {char!r}")
        return float(self.logprobs_next(context)[self.index(char)])

    def score(self, text: str) -> float:
        """Total log probability of the (normalised) sentence `text`, end of sentence included."""
        text = _normalise(text, self.lowercase)
        total = sum(self.logprob(c, text[:i]) for i, c in enumerate(text))
        return total + self.logprob(EOS, text)

    def perplexity(self, texts: Sequence[str]) -> float:
        """exp(-mean log prob per character), the end of each sentence counted as a character."""
        total = 0.0
        n = 0
        for t in texts:
            total += self.score(t)
            n += len(_normalise(t, self.lowercase)) + 1
        if n == 0:
            raise ValueError("perplexity of no texts")
        return math.exp(-total / n)

    # serialisation ------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable, compact and deterministic: the highest-order n-grams concatenated
        in sorted order (each exactly `order` characters) and their counts."""
        grams = sorted(self.counts)
        return {
            "format": _FORMAT,
            "smoothing": "interpolated_kneser_ney",
            "order": self.order,
            "lowercase": self.lowercase,
            "chars": "".join(self.chars),
            "ngrams": "".join(grams),
            "counts": [self.counts[g] for g in grams],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CharNgramLM:
        """The model `to_dict` wrote."""
        if d.get("format") != _FORMAT:
            raise ValueError(f"not a character n-gram LM dict (format {d.get('format')!r})")
        order = int(d["order"])
        flat: str = d["ngrams"]
        counts: list[int] = d["counts"]
        if len(flat) != order * len(counts):
            raise ValueError("corrupt LM dict: n-gram string and counts do not match")
        grams = {flat[i * order : (i + 1) * order]: int(c) for i, c in enumerate(counts)}
        return cls(order, list(d["chars"]), grams, bool(d["lowercase"]))


# --------------------------------------------------------------------------------------------
# Prefix beam search


def beam_search(
    log_probs: Any,
    labels: Sequence[str],
    beam: int = 8,
    lm: CharNgramLM | None = None,
    alpha: float = 0.5,
    beta: float = 1.0,
    prune: float = -10.0,
) -> str:
    """CTC prefix beam search, optionally with a character LM (shallow fusion); returns text.

    At each frame, characters whose log probability is below `prune` are not tried (the
    frame's best label always is). With `lm`, each character of the normalised text adds
    ``alpha * lm.logprob(char, text) + beta``, and the finished text adds
    ``alpha * lm.logprob(EOS, text)``. Without `lm` the score is the CTC probability alone.
    """
    _check_labels(labels)
    arr = _as_array(log_probs, labels)
    if beam < 1:
        raise ValueError(f"beam must be >= 1, got {beam}")
    blank = 0
    space = labels.index(" ") if " " in labels else -1
    n_labels = len(labels)
    lab2lm = (
        np.array([lm.index(lab) if lab else lm.unk_index for lab in labels], dtype=np.int64)
        if lm is not None
        else None
    )
    charges: dict[str, np.ndarray] = {}

    def charge(text: str) -> np.ndarray:
        """Score added by each label appended to a prefix whose text is `text`."""
        hit = charges.get(text)
        if hit is not None:
            return hit
        out = np.zeros(n_labels)
        if lm is not None and lab2lm is not None:
            if text.endswith(" "):  # the pending space is charged with the next character
                pending = alpha * float(lm.logprobs_next(text[:-1])[lm.index(" ")]) + beta
            else:
                pending = 0.0
            out = alpha * lm.logprobs_next(text)[lab2lm] + beta + pending
            if space >= 0:
                out[space] = 0.0
        out[blank] = 0.0
        charges[text] = out
        return out

    def extend(text: str, c: int) -> str:
        """Normalised text after appending label `c` (a space is kept pending, never doubled)."""
        if c == space:
            return text if (not text or text.endswith(" ")) else text + " "
        return text + labels[c]

    # prefix (label ids) -> [log p ending in blank, log p ending in non-blank, text]
    beams: dict[tuple[int, ...], list[Any]] = {(): [0.0, NEG_INF, ""]}
    for t in range(arr.shape[0]):
        lp = arr[t]
        cands = np.flatnonzero(lp >= prune)
        best = int(lp.argmax())
        if best not in cands:
            cands = np.append(cands, best)
        cands = cands[cands != blank]
        lp_c = lp[cands]
        children: dict[tuple[int, ...], set[int]] = {}
        for p in beams:
            if p:
                children.setdefault(p[:-1], set()).add(p[-1])
        nxt: dict[tuple[int, ...], list[Any]] = {}
        for prefix, (pb, pnb, text) in beams.items():
            total = _lae(pb, pnb)
            entry = nxt.setdefault(prefix, [NEG_INF, NEG_INF, text])
            entry[0] = _lae(entry[0], total + float(lp[blank]))
            last = prefix[-1] if prefix else -1
            if last >= 0:  # the last character held: same prefix
                entry[1] = _lae(entry[1], pnb + float(lp[last]))
            if cands.size == 0:
                continue
            base = np.full(cands.size, total)
            base[cands == last] = pb  # a repeat is a new character only after a blank
            scores = base + lp_c + charge(text)[cands]
            if cands.size > beam:  # only the best `beam` new prefixes can survive the cut
                keep = set(np.argpartition(-scores, beam - 1)[:beam].tolist())
                known = children.get(prefix, ())
                keep.update(int(i) for i in np.flatnonzero(np.isin(cands, list(known))))
                chosen: Sequence[int] = sorted(keep)
            else:
                chosen = range(cands.size)
            for i in chosen:
                s = float(scores[i])
                if s == NEG_INF:
                    continue
                c = int(cands[i])
                new = prefix + (c,)
                e = nxt.get(new)
                if e is None:
                    nxt[new] = [NEG_INF, s, extend(text, c)]
                else:
                    e[1] = _lae(e[1], s)
        ranked = sorted(nxt.items(), key=lambda kv: (-_lae(kv[1][0], kv[1][1]), kv[0]))
        beams = dict(ranked[:beam])

    finals: dict[str, float] = {}
    for pb, pnb, text in beams.values():
        out = text.rstrip(" ")
        s = _lae(pb, pnb)
        if lm is not None:
            s += alpha * float(lm.logprobs_next(out)[lm.eos_index])
        finals[out] = _lae(finals.get(out, NEG_INF), s)
    return max(sorted(finals), key=lambda k: finals[k])


# --------------------------------------------------------------------------------------------
# Keyword spotting


def _keyword_ids(keyword: str, labels: Sequence[str]) -> list[int]:
    """Label ids of `keyword` (NFC, whitespace-collapsed; lower-cased if only that form is
    covered by `labels`); ValueError naming the keyword and any characters not in `labels`."""
    kw = " ".join(unicodedata.normalize("NFC", keyword).split())
    if not kw:
        raise ValueError(f"empty keyword {keyword!r}")
    index = {lab: i for i, lab in enumerate(labels) if lab}
    missing = sorted({c for c in kw if c not in index})
    if missing and not any(c not in index for c in kw.lower()):
        kw, missing = kw.lower(), []
    if missing:
        raise ValueError(f"keyword {keyword!r} has characters not in the vocabulary: {missing!r}")
    return [index[c] for c in kw]


def spot(log_probs: Any, labels: Sequence[str], keyword: str, frame_seconds: float) -> dict:
    """Best segment where `keyword` is emitted: ``{"keyword", "score", "start_s", "end_s"}``.

    Viterbi over the keyword's CTC states (its characters with a blank between each pair,
    compulsory between equal characters), starting at any frame and ending at any frame, each
    frame scoring ``log p(state label) - max log p(frame)``. ``score`` is the segment's total
    per keyword character (<= 0; 0 = the best path emits the keyword), ``start_s``/``end_s`` the
    start of the segment's first frame and the end of its last (the keyword's first and last
    character). An utterance too short for the keyword gives
    ``score = -inf`` and ``None`` times.
    """
    _check_labels(labels)
    arr = _as_array(log_probs, labels)
    ids = _keyword_ids(keyword, labels)
    blank = 0
    states = [ids[0]]
    for c in ids[1:]:
        states += [blank, c]
    n_states = len(states)
    lab = np.asarray(states)
    # a character state may be entered from the character two back (skipping the blank)
    skip = np.zeros(n_states, dtype=bool)
    for s in range(2, n_states, 2):
        skip[s] = states[s] != states[s - 2]
    cost = arr - arr.max(axis=1, keepdims=True) if arr.size else arr
    score = np.full(n_states, NEG_INF)
    start = np.zeros(n_states, dtype=np.int64)
    best = (NEG_INF, -1, -1)  # (total, start frame, end frame)
    for t in range(arr.shape[0]):
        c = cost[t, lab]
        stay, stay_start = score, start
        prev = np.concatenate(([NEG_INF], score[:-1]))
        prev_start = np.concatenate(([0], start[:-1]))
        prev2 = np.where(skip, np.concatenate(([NEG_INF, NEG_INF], score[:-2])), NEG_INF)
        prev2_start = np.concatenate(([0, 0], start[:-2]))
        # ties prefer staying, then the previous state: the earliest start
        cand = np.stack([stay, prev, prev2])
        cand_start = np.stack([stay_start, prev_start, prev2_start])
        pick = np.argmax(cand, axis=0)
        new = cand[pick, np.arange(n_states)]
        new_start = cand_start[pick, np.arange(n_states)]
        if not new[0] >= 0.0:  # enter the keyword afresh here unless a tie (0) continues
            new[0], new_start[0] = 0.0, t
        score = new + c
        start = new_start
        if score[-1] > NEG_INF and score[-1] >= best[0]:  # ties: the latest end
            best = (float(score[-1]), int(start[-1]), t)
    total, t0, t1 = best
    if t0 < 0:
        return {"keyword": keyword, "score": NEG_INF, "start_s": None, "end_s": None}
    return {
        "keyword": keyword,
        "score": total / len(ids),
        "start_s": t0 * frame_seconds,
        "end_s": (t1 + 1) * frame_seconds,
    }


def spot_keywords(
    log_probs: Any,
    labels: Sequence[str],
    keywords: Sequence[str],
    frame_seconds: float,
    threshold: float,
) -> list[dict]:
    """`spot` for each keyword, each result with ``"detected": score >= threshold``."""
    arr = _as_array(log_probs, labels)
    out = []
    for kw in keywords:
        r = spot(arr, labels, kw, frame_seconds)
        r["detected"] = bool(r["score"] >= threshold)
        out.append(r)
    return out


def _occurs(keyword: str, reference: str) -> bool:
    """`keyword` (one or more words) is a whole-word run of `reference`, after casefold."""
    kw = keyword.casefold().split()
    words = reference.casefold().split()
    n = len(kw)
    return n > 0 and any(words[i : i + n] == kw for i in range(len(words) - n + 1))


def _prf(tp: int, fp: int, fn: int) -> dict[str, Any]:
    """Counts with precision, recall and F1 (None where undefined)."""
    p = tp / (tp + fp) if tp + fp else None
    r = tp / (tp + fn) if tp + fn else None
    f1 = None if p is None or r is None else (2 * p * r / (p + r) if p + r else 0.0)
    return {"tp": tp, "fp": fp, "fn": fn, "precision": p, "recall": r, "f1": f1}


def _counts(
    results: Sequence[Sequence[dict]],
    references: Sequence[str],
    keywords: Sequence[str],
    threshold: float | None,
) -> dict[str, list[int]]:
    """Per keyword [tp, fp, fn]; detection is ``score >= threshold`` or the `detected` flag."""
    if len(results) != len(references):
        raise ValueError(f"{len(results)} results for {len(references)} references")
    counts = {kw: [0, 0, 0] for kw in keywords}
    for utt, ref in zip(results, references, strict=True):
        by_kw = {r["keyword"]: r for r in utt}
        for kw in keywords:
            if kw not in by_kw:
                raise ValueError(f"no result for keyword {kw!r} in an utterance")
            r = by_kw[kw]
            hit = bool(r["detected"]) if threshold is None else r["score"] >= threshold
            present = _occurs(kw, ref)
            if hit and present:
                counts[kw][0] += 1
            elif hit:
                counts[kw][1] += 1
            elif present:
                counts[kw][2] += 1
    return counts


def keyword_metrics(
    results: Sequence[Sequence[dict]], references: Sequence[str], keywords: Sequence[str]
) -> dict[str, dict]:
    """tp/fp/fn, precision, recall, F1 per keyword and summed (``"_micro"``) over `keywords`.

    `results` holds one `spot_keywords` output per utterance; a keyword occurs in a reference
    when it is a whole word (run of words) of it, after casefold."""
    counts = _counts(results, references, keywords, None)
    out = {kw: _prf(*c) for kw, c in counts.items()}
    out["_micro"] = _prf(*(sum(c[i] for c in counts.values()) for i in range(3)))
    return out


def best_threshold(
    results_per_utt: Sequence[Sequence[dict]], references: Sequence[str], keywords: Sequence[str]
) -> float:
    """The threshold among the distinct finite scores that maximises micro F1 (undefined F1
    counts as -1); ties go to the higher threshold. For a validation split."""
    kws = set(keywords)
    scores = sorted(
        {
            float(r["score"])
            for utt in results_per_utt
            for r in utt
            if r["keyword"] in kws and math.isfinite(r["score"])
        },
        reverse=True,
    )
    if not scores:
        raise ValueError("no finite scores to choose a threshold from")
    best_t, best_f = scores[0], -2.0
    for th in scores:
        counts = _counts(results_per_utt, references, keywords, th)
        f1 = _prf(*(sum(c[i] for c in counts.values()) for i in range(3)))["f1"]
        f = -1.0 if f1 is None else f1
        if f > best_f:  # strict: on a tie the earlier (higher) threshold stays
            best_t, best_f = th, f
    return best_t
