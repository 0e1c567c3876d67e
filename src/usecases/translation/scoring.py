"""Scores the way MT papers report them (sacrebleu BLEU, chrF, chrF++, with signatures), the
published anchors, and the model-card tables (the glossary baseline is in `glossary`).

Hypotheses and references are NFC-normalised the same way before scoring (FLORES-200 mixes NFC
and NFD); references are otherwise used exactly as published.
"""

from __future__ import annotations

import csv
import re
import statistics
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from usecases.translation.corpus import nfc

# Published anchors. MAFAND-MT paper (Adelani et al. 2022, Table 5): M2M-100 418M fine-tuned on
# MAFAND-MT, BLEU on MAFAND-MT test. NLLB-200 on FLORES-200 devtest comes from the
# nllb_anchor_scores archive (Helsinki-NLP re-evaluation) at evaluation time.
MAFAND_M2M100_BLEU = {"fra-fon": 4.96, "fon-fra": 7.81, "fra-ewe": 7.33, "ewe-fra": 10.53}
NLLB_ANCHOR_MODEL = "huggingface/facebook/nllb-200-distilled-600M"
ANCHOR_FILE = "nllb_anchor_scores/flores200_devtest_nllb_scores.tsv"


def _metrics(refs: list[list[str]] | None = None):
    from sacrebleu.metrics import BLEU, CHRF

    return BLEU(references=refs), CHRF(), CHRF(word_order=2, references=refs)


def _clean(xs: list[str]) -> list[str]:
    return [" ".join(nfc(x).split()) for x in xs]


def score(hyps: list[str], refs: list[str], brief: bool = False) -> dict[str, Any]:
    """Corpus BLEU, chrF and chrF++ (and the hypothesis/reference length ratio)."""
    return References(refs).score(hyps, brief)[0]


class References:
    """One test set's references, read once for every system scored against them (the model,
    the copy-the-source and glossary baselines): sacrebleu's own reference cache holds their
    BLEU n-gram counts and chrF++ n-grams, which are a third of the work of scoring a set, so
    a set's three systems cost one reading of its references instead of three (a test checks
    the scores against sacrebleu's `corpus_score` and `sentence_score`)."""

    def __init__(self, refs: list[str]) -> None:
        self.refs = _clean(refs)
        self.bleu, self.chrf, self.chrfpp = _metrics([self.refs])

    def score(
        self, hyps: list[str], brief: bool = False, sentences: bool = False
    ) -> tuple[dict[str, Any], list[float]]:
        """`score`, and with `sentences` each sentence's chrF++ (else []). One pass of
        sacrebleu's chrF++ statistics gives all the chrF figures: a sentence's statistics are
        its (hypothesis, reference, match) counts per n-gram order, character orders first, so
        the corpus chrF++ is the score of their sum and the corpus chrF the score of that sum's
        character part (sacrebleu's own statistics and score functions, which its significance
        tests use). Scoring the default's test sets this way takes about half the time of one
        pass per figure."""
        if len(hyps) != len(self.refs):
            raise ValueError(f"{len(hyps)} translations for {len(self.refs)} references")
        h = _clean(hyps)
        chrfpp, chrf = self.chrfpp, self.chrf
        stats = chrfpp._extract_corpus_statistics(h, None) if h else []
        total = (
            [sum(column) for column in zip(*stats, strict=True)]
            if stats
            else [0] * (3 * (chrfpp.char_order + chrfpp.word_order))
        )
        out = {
            "bleu": round(self.bleu.corpus_score(h, None).score, 2) if h else 0.0,
            "chrf": round(chrf._compute_score_from_stats(total[: 3 * chrf.char_order]).score, 2),
            "chrf_pp": round(chrfpp._compute_score_from_stats(total).score, 2),
        }
        if not brief:
            out["length_ratio"] = round(
                sum(len(x) for x in h) / max(1, sum(len(x) for x in self.refs)), 3
            )
            out["n"] = len(h)
        return out, [chrfpp._compute_score_from_stats(x).score for x in stats] if sentences else []


_TOKEN = re.compile(r"\w+(?:[.,:]\d+)*")


def names_numbers(text: str) -> set[str]:
    """The numbers of `text` (NFC) and its capitalised words of 3 or more letters after the
    first word: mostly names."""
    words = _TOKEN.findall(nfc(text))
    numbers = {w for w in words if w[0].isdigit() and w[-1].isdigit()}
    return numbers | {w for w in words[1:] if len(w) >= 3 and w.isalpha() and w[0].isupper()}


def kept_names_numbers(hyps: list[str], srcs: list[str], refs: list[str]) -> dict[str, Any]:
    """Of the names and numbers that a source and its reference share (written the same in
    both), the share that the translation writes too (anywhere, as a whole word): what a
    translation should copy, and the copy-the-source baseline keeps them all."""
    shared = kept = 0
    for h, s, r in zip(hyps, srcs, refs, strict=True):
        both = names_numbers(s) & names_numbers(r)
        shared += len(both)
        kept += len(both & set(_TOKEN.findall(nfc(h))))
    return {"shared": shared, "kept": round(kept / shared, 3) if shared else None}


def score_set(job: tuple) -> tuple[dict[str, Any], list[str]]:
    """One test set: the model's scores, the copy-the-source and glossary baselines', the
    cleaned-reference score where `cleaned` references are given, and each sentence's chrF++
    (formatted as in predictions.csv). `job` = (hyps, sources, refs, glossary drafts, cleaned
    references or None)."""
    hyps, srcs, refs, drafts, cleaned = job
    against = References(refs)
    entry, sentences = against.score(hyps, brief=False, sentences=True)
    entry["names_numbers"] = kept_names_numbers(hyps, srcs, refs)
    entry["baselines"] = {
        "copy_source": against.score(srcs, brief=True)[0],
        "glossary": against.score(drafts, brief=True)[0],
    }
    if cleaned is not None:
        entry["cleaned_reference"] = score(hyps, cleaned, brief=True)
    return entry, [f"{x:.2f}" for x in sentences]


def score_sets(jobs: list[tuple], workers: int = 1) -> list[tuple[dict[str, Any], list[str]]]:
    """`score_set` of every job, in job order, in `workers` processes (sacrebleu is pure Python
    and runs on one core: scoring the default's 38 test sets took about 2.5 min in one process).
    The scores do not depend on `workers`."""
    if workers < 0:
        raise ValueError(f"workers={workers}: expected 0 (automatic) or more")
    workers = min(workers, len(jobs))
    if workers <= 1:
        return [score_set(j) for j in jobs]
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        return list(pool.map(score_set, jobs))


def signatures() -> dict[str, str]:
    bleu, chrf, chrfpp = _metrics()
    for m in (bleu, chrf, chrfpp):  # a signature names the reference count: score once
        m.corpus_score(["a"], [["a"]])
    return {
        "bleu": bleu.get_signature().format(),
        "chrf": chrf.get_signature().format(),
        "chrf_pp": chrfpp.get_signature().format(),
    }


def spbleu_status() -> str:
    """spBLEU needs the FLORES-200 SentencePiece model, which sacrebleu downloads on first use;
    offline it is computed only if that model is already in sacrebleu's cache."""
    from sacrebleu.utils import SACREBLEU_DIR

    model = Path(SACREBLEU_DIR) / "models" / "flores200sacrebleuspm"
    if model.is_file():
        return "available"
    return f"not computed: the flores200 SentencePiece model is not in {model.parent} (offline)"


# -- aggregation, anchors, tables ---------------------------------------------------------------
def _mean(xs: list[float]) -> float | None:
    return round(statistics.fmean(xs), 2) if xs else None


def summarise(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Headline figures over directions: the mean chrF++ on FLORES-200 devtest over trained
    directions is `chrf` (the zoo's headline); zero-shot directions are averaged apart."""
    flores, mafand = results.get("flores", {}), results.get("mafand", {})
    trained = [v for v in flores.values() if not v["zero_shot"]]
    zero = [v for v in flores.values() if v["zero_shot"]]
    summary = {
        "chrf": _mean([v["chrf_pp"] for v in trained]),
        "flores_chrf_pp_mean": _mean([v["chrf_pp"] for v in trained]),
        "flores_copy_chrf_pp_mean": _mean(
            [v["baselines"]["copy_source"]["chrf_pp"] for v in trained]
        ),
        "flores_glossary_chrf_pp_mean": _mean(
            [v["baselines"]["glossary"]["chrf_pp"] for v in trained]
        ),
        "flores_zero_shot_chrf_pp_mean": _mean([v["chrf_pp"] for v in zero]),
        "mafand_chrf_pp_mean": _mean([v["chrf_pp"] for v in mafand.values()]),
        "mafand_bleu_mean": _mean([v["bleu"] for v in mafand.values()]),
        "mafand_copy_chrf_pp_mean": _mean(
            [v["baselines"]["copy_source"]["chrf_pp"] for v in mafand.values()]
        ),
        "mafand_glossary_chrf_pp_mean": _mean(
            [v["baselines"]["glossary"]["chrf_pp"] for v in mafand.values()]
        ),
        # Names and numbers that source and reference share, kept by the translation (FLORES,
        # trained directions; see kept_names_numbers).
        "flores_names_numbers_kept": _mean(
            [
                v["names_numbers"]["kept"]
                for v in trained
                if v.get("names_numbers", {}).get("kept") is not None
            ]
        ),
    }
    summary["flores"] = flores
    summary["mafand"] = mafand
    return summary


def read_anchors(raw: Path) -> dict[str, dict[str, float]]:
    """NLLB-200 chrF++/spBLEU on FLORES-200 devtest per direction, for NLLB_ANCHOR_MODEL."""
    path = raw / ANCHOR_FILE
    if not path.is_file():
        return {}
    out = {}
    with open(path, encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            if row["model"] == NLLB_ANCHOR_MODEL and row["benchmark"] == "flores200-devtest":
                out[row["pair"]] = {"chrf_pp": float(row["chrF++"]), "spbleu": float(row["spBLEU"])}
    return out


def anchors(raw: Path) -> dict[str, Any]:
    return {
        "flores_nllb200_distilled_600M": read_anchors(raw),
        "mafand_m2m100_418M_finetuned_bleu": MAFAND_M2M100_BLEU,
        "sources": {
            "flores": "Helsinki-NLP External-MT-leaderboard re-evaluation of "
            "facebook/nllb-200-distilled-600M (chrF++, spBLEU)",
            "mafand": "Adelani et al. 2022 (NAACL), M2M-100 418M fine-tuned on MAFAND-MT (BLEU)",
        },
    }


def _fmt(x: Any) -> str:
    return f"{x:.2f}" if isinstance(x, int | float) else "-"


def card_tables(metrics: dict[str, Any]) -> str:
    anc = metrics.get("anchors", {})
    nllb = anc.get("flores_nllb200_distilled_600M", {})
    m2m = anc.get("mafand_m2m100_418M_finetuned_bleu", {})
    lines = ["## Scores (test sets as published; never dev or training data)", ""]
    if metrics.get("eval_limit"):
        lines.append(
            f"**Only the first {metrics['eval_limit']} sentences of each test direction were "
            "scored (a smoke run): these figures do not compare with published ones.**\n"
        )
    lines += [
        "### FLORES-200 devtest",
        "",
        "| direction | BLEU | chrF | chrF++ | length ratio | copy chrF++ | glossary chrF++ "
        "| NLLB-200 600M chrF++ | gap |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for key, v in sorted(metrics.get("flores", {}).items()):
        a = nllb.get(key, {}).get("chrf_pp")
        gap = v["chrf_pp"] - a if a is not None else None
        mark = " (zero-shot)" if v["zero_shot"] else ""
        lines.append(
            f"| {key}{mark} | {_fmt(v['bleu'])} | {_fmt(v['chrf'])} | {_fmt(v['chrf_pp'])} | "
            f"{_fmt(v['length_ratio'])} | {_fmt(v['baselines']['copy_source']['chrf_pp'])} | "
            f"{_fmt(v['baselines']['glossary']['chrf_pp'])} | {_fmt(a)} | "
            f"{'-' if gap is None else f'{gap:+.2f}'} |"
        )
    lines += [
        "",
        "### MAFAND-MT test",
        "",
        "| direction | BLEU | chrF | chrF++ | length ratio | copy chrF++ | glossary chrF++ "
        "| M2M-100 418M fine-tuned BLEU | gap (BLEU) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for key, v in sorted(metrics.get("mafand", {}).items()):
        a = m2m.get(key)
        gap = v["bleu"] - a if a is not None else None
        lines.append(
            f"| {key} | {_fmt(v['bleu'])} | {_fmt(v['chrf'])} | {_fmt(v['chrf_pp'])} | "
            f"{_fmt(v['length_ratio'])} | {_fmt(v['baselines']['copy_source']['chrf_pp'])} | "
            f"{_fmt(v['baselines']['glossary']['chrf_pp'])} | {_fmt(a)} | "
            f"{'-' if gap is None else f'{gap:+.2f}'} |"
        )
    cleaned = {
        k: v["cleaned_reference"]
        for k, v in metrics.get("mafand", {}).items()
        if "cleaned_reference" in v
    }
    if cleaned:
        lines.append("")
        lines.append(
            "Against references with the CSV-quoting artefacts and line numbers removed "
            "(labelled; the table above uses the published references): "
            + "; ".join(
                f"{k} chrF++ {v['chrf_pp']:.2f}, BLEU {v['bleu']:.2f}" for k, v in cleaned.items()
            )
        )
    data = metrics.get("data")
    if data:
        pairs = "; ".join(
            f"{k.split('/')[0]}: " + ", ".join(f"{p} {n:,}" for p, n in v.items())
            for k, v in data["training_pairs"].items()
        )
        clean = data["cleaning"]
        quotes = sum(v for k, v in clean.items() if k.startswith("quotes_cleaned"))
        numbers = sum(v for k, v in clean.items() if k.startswith("line_numbers_removed"))
        lines += [
            "",
            "## Training data",
            f"Pairs after cleaning (each trains both directions): {pairs}. "
            f"Quarantined (empty or misaligned, with reasons in quarantine.csv): "
            f"{data['quarantined']}, of which {clean.get('devtest_overlap', 0)} because a side "
            f"is in FLORES-200 devtest and {clean.get('mafand_test_overlap', 0)} because a side "
            f"is in MAFAND-MT test. CSV-quoting artefacts cleaned in "
            f"{quotes} MAFAND-MT training pairs and a leading line number (on one side "
            f"only) removed from {numbers}; test references were left as published. "
            f"Shared SentencePiece vocabulary: {data['vocab_size']} pieces.",
        ]
        if "flores_dev_heldout" in data:
            n = data["flores_dev_heldout"]
            lines[-1] += (
                f" The `flores` pairs are FLORES-200 dev sentences {n + 1} onwards, for the "
                f"language pairs the corpora train (never a zero-shot one); dev sentences 1-{n} "
                "were held out for model selection, and FLORES-200 devtest was never trained on."
            )
    decoding = metrics.get("decoding")
    if decoding:
        beams, ngram = decoding.get("beams", 1), decoding.get("no_repeat_ngram", 0)
        rules = ["greedy" if beams == 1 else f"beam search ({beams} beams)"]
        if ngram:
            rules.append(f"no {ngram}-gram of subwords twice")
        if decoding.get("repetition_penalty", 1.0) != 1.0:
            rules.append(f"repetition penalty {decoding['repetition_penalty']}")
        said = ", ".join(rules)
        lines += [
            "",
            "## Decoding",
            f"{said[0].upper()}{said[1:]}; at least {decoding.get('min_new_tokens')} and at "
            f"most {decoding.get('max_new_tokens')} subwords. Names and numbers: "
            f"{decoding.get('names_and_numbers')}. Lexical prior: "
            f"{decoding.get('lexical_prior')}. The rules are stored with the weights: "
            "`zoo translate` decodes the same way.",
        ]
    lines += [
        "",
        f"Signatures: BLEU `{metrics.get('signatures', {}).get('bleu', '-')}`; chrF++ "
        f"`{metrics.get('signatures', {}).get('chrf_pp', '-')}`. spBLEU: {metrics.get('spbleu', '-')}.",
        "Anchors: " + "; ".join(anc.get("sources", {}).values()) + ".",
        "",
        "## Responsible use",
        "Outputs must be checked by a speaker of the language before any official use. "
        "Trained on MAFAND-MT (CC BY-NC 4.0): **non-commercial use only**. NLLB-Seed and "
        "FLORES-200 are CC BY-SA 4.0. Languages (ISO 639-3): "
        + ", ".join(metrics.get("languages", []))
        + ".",
    ]
    return "\n".join(lines) + "\n"


def decode_speed(translate, tests: list[dict[str, Any]], opts) -> dict[str, Any] | None:
    """CPU decoding speed on real test sentences: one sentence at a time on one thread, and a
    batch of 32 on all threads (sentences/s)."""
    import platform

    import torch

    from usecases.translation.decode import DecodeOptions

    if not tests or not tests[0]["rows"]:
        return None
    t = tests[0]
    sents = [nfc(s) for s, _, _ in t["rows"][:32]]
    one = DecodeOptions(**{**opts.__dict__, "batch_size": 1})
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        times = []
        for s in sents[:10]:
            t0 = time.perf_counter()
            translate([s], t["src"], t["tgt"], one)
            times.append(time.perf_counter() - t0)
    finally:
        torch.set_num_threads(before)
    t0 = time.perf_counter()
    translate(sents, t["src"], t["tgt"], opts)
    batch_s = time.perf_counter() - t0
    return {
        "latency_ms_batch1_1thread": {"eager": round(statistics.median(times) * 1000, 2)},
        "throughput_items_per_s": round(len(sents) / batch_s, 1),
        "throughput_batch": len(sents),
        "items": f"sentences ({t['src']}-{t['tgt']})",
        "threads": torch.get_num_threads(),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "torch": torch.__version__,
    }


def direction_table(metrics: dict[str, Any]) -> str:
    """Plot data: chrF++ per benchmark and direction, with the two baselines."""
    lines = ["direction,benchmark,chrf_pp,copy_chrf_pp,glossary_chrf_pp,zero_shot"]
    for bench in ("flores", "mafand"):
        for key, v in sorted(metrics.get(bench, {}).items()):
            b = v["baselines"]
            lines.append(
                f"{bench}:{key},{bench},{v['chrf_pp']},{b['copy_source']['chrf_pp']},"
                f"{b['glossary']['chrf_pp']},{int(v.get('zero_shot', False))}"
            )
    return "\n".join(lines) + "\n"


def examples(rows: list[list[Any]], k: int = 3) -> dict[str, Any]:
    """The k best and k worst translations (sentence chrF++) of each benchmark and direction,
    among sentences of 5 to 40 words, for the report."""
    groups: dict[str, list[list[Any]]] = defaultdict(list)
    for r in rows:
        if 5 <= len(r[3].split()) <= 40:
            groups[f"{r[0]}:{r[1]}"].append(r)
    out = {}
    for key, rs in sorted(groups.items()):
        rs = sorted(rs, key=lambda r: (float(r[6]), r[2]))
        pick = lambda xs: [  # noqa: E731
            {
                "line": r[2],
                "source": r[3],
                "reference": r[4],
                "hypothesis": r[5],
                "chrf_pp": float(r[6]),
            }
            for r in xs
        ]
        out[key] = {"best": pick(rs[::-1][:k]), "worst": pick(rs[:k])}
    return out


def speed_lines(speed: dict[str, Any] | None) -> str:
    if not speed:
        return ""
    lat = speed["latency_ms_batch1_1thread"]["eager"]
    return (
        "\n## Speed (measured while this card was written; timings vary by ±20 %)\n"
        f"- CPU latency, one sentence, 1 thread: {lat:.1f} ms ({speed['items']}, greedy unless "
        "the release sets beams)\n"
        f"- CPU throughput, batch {speed['throughput_batch']}, {speed['threads']} threads: "
        f"{speed['throughput_items_per_s']:.1f} sentences/s\n"
        f"- machine: {speed['machine']}, torch {speed['torch']}\n"
    )
