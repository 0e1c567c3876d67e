"""Speech decoding on synthetic CTC posteriors built here: best path, prefix beam search with and
without the character LM, the LM itself, keyword spotting and its metrics."""

from __future__ import annotations

import json
import math
import string

import numpy as np
import pytest
import torch

from usecases.speech.decode import (
    EOS,
    CharNgramLM,
    beam_search,
    best_threshold,
    greedy,
    ids_to_text,
    keyword_metrics,
    spot,
    spot_keywords,
)

LABELS = ["", " ", *string.ascii_lowercase, "'"]
FRAME_S = 0.02
LM_TEXTS = [
    "the cat sat on the mat",
    "a cat sat here",
    "my cat is black",
    "the cat ate the fish",
    "the dog sat by the door",
    "a book is on the table",
    "she reads a good book",
]


def posteriors(
    text: str,
    *,
    per_char: int = 2,
    blanks_between: int = 1,
    seed: int = 0,
    confuse: dict[int, tuple[str, float]] | None = None,
) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Log posteriors [T, V] peaked on `text`'s characters (`per_char` frames each, then
    `blanks_between` blank frames), three blank frames before and two after, small noise.
    `confuse` maps a character position to (label, margin): on that character's frames the
    label is raised `margin` above the true one. Also returns each character's frame span."""
    rng = np.random.default_rng(seed)
    target = [0, 0, 0]
    spans = []
    for ch in text:
        spans.append((len(target), len(target) + per_char - 1))
        target += [LABELS.index(ch)] * per_char + [0] * blanks_between
    target += [0, 0]
    logits = rng.normal(0.0, 0.3, (len(target), len(LABELS)))
    logits[np.arange(len(target)), target] += 8.0
    for pos, (label, margin) in (confuse or {}).items():
        a, b = spans[pos]
        for t in range(a, b + 1):
            logits[t, LABELS.index(label)] = logits[t, target[t]] + margin
    logp = logits - np.logaddexp.reduce(logits, axis=1, keepdims=True)
    return logp, spans


@pytest.fixture(scope="module")
def lm() -> CharNgramLM:
    return CharNgramLM.fit(LM_TEXTS, labels=LABELS)


# --- best path ------------------------------------------------------------------------------


def test_greedy_recovers_text_with_doubled_letters():
    lp, _ = posteriors("a good book")
    ids = greedy(lp)
    assert ids_to_text(ids, LABELS) == "a good book"
    assert 0 not in ids
    # without a blank between the two o's, CTC collapses them: the blank is what makes "oo"
    lp, _ = posteriors("book", blanks_between=0)
    assert ids_to_text(greedy(lp), LABELS) == "bok"


def test_greedy_accepts_torch_and_ids_to_text_normalises_spaces():
    lp, _ = posteriors("the cat")
    assert greedy(torch.from_numpy(lp).float()) == greedy(lp)
    sp, a, b = LABELS.index(" "), LABELS.index("a"), LABELS.index("b")
    assert ids_to_text([sp, a, sp, sp, 0, b, sp], LABELS) == "a b"


# --- beam search ----------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["a good book", "the cat sat", "hello there"])
def test_beam_without_lm_equals_greedy_on_clean_posteriors(text):
    lp, _ = posteriors(text, seed=3)
    expected = ids_to_text(greedy(lp), LABELS)
    assert expected == text
    assert beam_search(lp, LABELS, beam=8) == expected
    assert beam_search(lp, LABELS, beam=1) == expected
    assert beam_search(torch.from_numpy(lp), LABELS, beam=4) == expected


def test_lm_corrects_an_acoustically_ambiguous_character(lm):
    # the frames of "a" in "cat" slightly prefer "u": the acoustics alone say "cut"
    lp, _ = posteriors("the cat sat", confuse={5: ("u", 0.5)})
    assert ids_to_text(greedy(lp), LABELS) == "the cut sat"
    assert beam_search(lp, LABELS, beam=8, lm=lm) == "the cat sat"
    assert beam_search(lp, LABELS, beam=8, lm=lm, alpha=0.0, beta=0.0) == "the cut sat"
    assert beam_search(lp, LABELS, beam=8, lm=None) == "the cut sat"


def test_beam_search_checks_its_inputs():
    lp, _ = posteriors("cat")
    with pytest.raises(ValueError, match="labels"):
        beam_search(lp[:, :-1], LABELS)
    with pytest.raises(ValueError, match="blank"):
        beam_search(lp, ["x", *LABELS[1:]])


# --- character LM ---------------------------------------------------------------------------


@pytest.mark.parametrize("context", ["", "the c", "qqqq", "she reads a good book"])
def test_lm_next_character_distribution_sums_to_one(lm, context):
    known = sum(math.exp(lm.logprob(c, context)) for c in lm.chars) + math.exp(
        lm.logprob(EOS, context)
    )
    unseen = math.exp(lm.logprob("é", context))  # the share of each never-seen character
    assert 0.99 < known < 1.0
    assert known + unseen == pytest.approx(1.0, abs=1e-9)


def test_lm_unseen_character_is_finite_and_unlikely(lm):
    lp = lm.logprob("ж", "the c")
    assert math.isfinite(lp)
    assert lp < lm.logprob("a", "the c") - 3
    assert lm.logprob("a", "the c") > lm.logprob("u", "the c")  # "cat" seen, "cut" not
    assert math.isfinite(lm.score("жжж"))


def test_lm_perplexity_lower_on_training_text_than_on_shuffled(lm):
    rng = np.random.default_rng(0)
    shuffled = ["".join(rng.permutation(list(t))) for t in LM_TEXTS]
    assert lm.perplexity(LM_TEXTS) < 3.0
    assert lm.perplexity(LM_TEXTS) * 3 < lm.perplexity(shuffled)
    assert lm.score("The  Cat sat") == pytest.approx(lm.score("the cat sat"))


def test_lm_round_trip_and_deterministic_json(lm):
    d = lm.to_dict()
    text = json.dumps(d, sort_keys=True)
    back = CharNgramLM.from_dict(json.loads(text))
    for t in [*LM_TEXTS, "a cat ate a book", "zzz"]:
        assert back.score(t) == lm.score(t)
    assert json.dumps(back.to_dict(), sort_keys=True) == text
    again = CharNgramLM.fit(list(LM_TEXTS), labels=list(LABELS))
    assert json.dumps(again.to_dict(), sort_keys=True) == text
    assert d["order"] == 5 and len(d["ngrams"]) == 5 * len(d["counts"])
    other = CharNgramLM.fit(LM_TEXTS, order=3)
    assert other.score("the cat") != lm.score("the cat")
    with pytest.raises(ValueError):
        CharNgramLM.from_dict({"format": "something else"})


# --- keyword spotting -----------------------------------------------------------------------


def test_spot_finds_a_present_keyword_with_its_times():
    lp, spans = posteriors("i read a book here")
    r = spot(lp, LABELS, "book", FRAME_S)
    assert r["keyword"] == "book"
    assert r["score"] > -0.01
    start, end = spans[9][0] * FRAME_S, (spans[12][1] + 1) * FRAME_S  # "b" .. "k"
    assert abs(r["start_s"] - start) <= 2 * FRAME_S + 1e-9
    assert abs(r["end_s"] - end) <= 2 * FRAME_S + 1e-9
    assert spot(lp, LABELS, "BOOK", FRAME_S)["score"] == pytest.approx(r["score"])


def test_spot_scores_absent_keywords_clearly_lower():
    lp, _ = posteriors("i read a book here")
    present = spot(lp, LABELS, "here", FRAME_S)["score"]
    assert present > -0.01
    assert spot(lp, LABELS, "cotonou", FRAME_S)["score"] < present - 2
    # "bok" is not what the posteriors say: the doubled "o" needs its blank
    assert spot(lp, LABELS, "bok", FRAME_S)["score"] < present - 1
    # and "book" is not in "a bok": its two o's cannot share one run of "o" frames
    lp, _ = posteriors("a bok")
    assert spot(lp, LABELS, "bok", FRAME_S)["score"] > -0.01
    assert spot(lp, LABELS, "book", FRAME_S)["score"] < -1


def test_spot_rejects_out_of_vocabulary_characters():
    lp, _ = posteriors("cafe")
    with pytest.raises(ValueError, match=r"café.*é"):
        spot(lp, LABELS, "café", FRAME_S)


def test_spot_keywords_flags_detections():
    lp, _ = posteriors("the cat sat")
    out = spot_keywords(lp, LABELS, ["cat", "dog"], FRAME_S, threshold=-1.0)
    assert [r["keyword"] for r in out] == ["cat", "dog"]
    assert [r["detected"] for r in out] == [True, False]


def _res(**detected: bool) -> list[dict]:
    return [{"keyword": k, "score": 0.0 if v else -5.0, "detected": v} for k, v in detected.items()]


def test_keyword_metrics_counts_whole_words_only():
    refs = ["bata cotonou", "ba ba", "hello", "Cotonou"]
    results = [
        _res(ba=True, cotonou=True, zz=False),  # "ba" inside "bata" is not an occurrence: fp
        _res(ba=False, cotonou=False, zz=False),  # ba missed: fn
        _res(ba=True, cotonou=True, zz=False),  # both fp
        _res(ba=False, cotonou=True, zz=False),  # casefold: tp
    ]
    m = keyword_metrics(results, refs, ["ba", "cotonou", "zz"])
    assert (m["ba"]["tp"], m["ba"]["fp"], m["ba"]["fn"]) == (0, 2, 1)
    assert m["ba"]["precision"] == 0.0 and m["ba"]["f1"] == 0.0
    assert (m["cotonou"]["tp"], m["cotonou"]["fp"], m["cotonou"]["fn"]) == (2, 1, 0)
    assert m["cotonou"]["precision"] == pytest.approx(2 / 3)
    assert m["cotonou"]["recall"] == 1.0
    assert m["cotonou"]["f1"] == pytest.approx(0.8)
    assert m["zz"]["precision"] is None and m["zz"]["recall"] is None and m["zz"]["f1"] is None
    micro = m["_micro"]
    assert (micro["tp"], micro["fp"], micro["fn"]) == (2, 3, 1)
    assert micro["recall"] == pytest.approx(2 / 3)


def test_best_threshold_separates_a_clean_case():
    refs = ["i read a book here", "the cat sat", "my dog ran", "a good cat"]
    kws = ["book", "cat", "dog"]
    lps = [posteriors(r, seed=i)[0] for i, r in enumerate(refs)]
    first = [spot_keywords(lp, LABELS, kws, FRAME_S, threshold=0.5) for lp in lps]
    assert keyword_metrics(first, refs, kws)["_micro"]["tp"] == 0  # nothing reaches 0.5
    th = best_threshold(first, refs, kws)
    present = [
        r["score"] for utt, ref in zip(first, refs, strict=True) for r in utt if r["keyword"] in ref
    ]
    assert th == pytest.approx(min(present))
    again = [spot_keywords(lp, LABELS, kws, FRAME_S, threshold=th) for lp in lps]
    micro = keyword_metrics(again, refs, kws)["_micro"]
    assert (micro["tp"], micro["fp"], micro["fn"]) == (4, 0, 0)


def test_best_threshold_prefers_the_higher_of_tied_thresholds():
    refs = ["kw", "no", "no", "kw"]
    scores = [-1.0, -2.0, -3.0, -4.0]  # -1 -> F1 2/3 (P 1, R .5); -4 -> F1 2/3 (P .5, R 1)
    results = [[{"keyword": "kw", "score": s, "detected": False}] for s in scores]
    assert best_threshold(results, refs, ["kw"]) == -1.0
