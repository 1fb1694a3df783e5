r"""Corpus BLEU against several references per sentence (Papineni et al. 2002).

For hypotheses :math:`h_i` (token lists) with reference sets :math:`R_i`, the modified n-gram
precision of the corpus is

.. math::
    p_n = \frac{\sum_i \sum_{g \in G_n(h_i)} \min\big(c_{h_i}(g),\ \max_{r \in R_i} c_r(g)\big)}
               {\sum_i |G_n(h_i)|}

where :math:`G_n(s)` are the n-grams of :math:`s` (with repeats) and :math:`c_s(g)` counts
:math:`g` in :math:`s`: each hypothesis n-gram is credited at most as often as one reference
holds it. With :math:`c = \sum_i |h_i|` and :math:`r = \sum_i |r_i^*|`, :math:`r_i^*` the
reference closest in length to :math:`h_i` (the shorter on a tie, as NLTK and sacreBLEU), the
brevity penalty is :math:`BP = 1` if :math:`c > r`, else :math:`e^{1 - r / c}`, and

.. math::
    \mathrm{BLEU}\text{-}N = BP \cdot \exp\Big(\frac{1}{N} \sum_{n=1}^{N} \ln p_n\Big)

(0 when some :math:`p_n = 0`; no smoothing: scores are for a whole test corpus). BLEU-1 to -4
are the image-captioning literature's usual report (Vinyals et al. 2015).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence


def ngrams(tokens: Sequence[str], n: int) -> Counter[tuple[str, ...]]:
    """The n-grams of ``tokens`` with their counts."""
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def corpus_bleu(hypotheses: Sequence[str], references: Sequence[Sequence[str]], max_n: int = 4) -> list[float]:
    """BLEU-1 ... BLEU-``max_n`` of whitespace-tokenised ``hypotheses`` against ``references``
    (one non-empty sequence of reference strings per hypothesis), each in [0, 1].

    Example:
        >>> bleu = corpus_bleu(["the cat sat on the mat"], [["the cat is on the mat", "there is a cat on the mat"]])
        >>> [round(b, 4) for b in bleu]
        [0.8333, 0.7071, 0.5, 0.0]
    """
    if len(hypotheses) != len(references) or not hypotheses:
        raise ValueError(
            f"expected one reference set per hypothesis, got {len(hypotheses)} hypotheses and {len(references)} sets"
        )
    matched, total = [0] * max_n, [0] * max_n
    hypothesis_length = reference_length = 0
    for hypothesis, reference_set in zip(hypotheses, references):
        if not reference_set:
            raise ValueError(f"every hypothesis needs a reference, got none for {hypothesis!r}")
        words = hypothesis.split()
        reference_words = [reference.split() for reference in reference_set]
        hypothesis_length += len(words)
        reference_length += min((abs(len(r) - len(words)), len(r)) for r in reference_words)[1]
        for n in range(1, max_n + 1):
            counts = ngrams(words, n)
            most = Counter()  # each n-gram's largest count in one reference
            for reference in reference_words:
                most |= ngrams(reference, n)
            matched[n - 1] += sum(min(count, most[gram]) for gram, count in counts.items())
            total[n - 1] += sum(counts.values())
    if hypothesis_length == 0:
        return [0.0] * max_n
    brevity = 1.0 if hypothesis_length > reference_length else math.exp(1 - reference_length / hypothesis_length)
    scores, log_sum = [], 0.0
    for n in range(max_n):
        if matched[n] == 0:
            scores += [0.0] * (max_n - n)  # every longer BLEU multiplies by this zero too
            break
        log_sum += math.log(matched[n] / total[n])
        scores.append(brevity * math.exp(log_sum / (n + 1)))
    return scores
