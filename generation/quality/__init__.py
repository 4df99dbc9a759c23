"""Quality signals of generated drafts: pure functions, no Django, no model loading.

``brief``: ``brief_terms``, ``coverage``, ``unsupported_specifics``, ``agreement`` (what a
draft owes its brief and its sources). ``signals``: the per-draft signals, the score and the
reasons (``draft_signals``, ``job_signals``, ``quality_score``), the on-brief-first order of a
job's candidates (``rank_order``, ``best_index``), and the top-up rule
(``needs_topup``, ``topup_note``; ``rebrief`` spells out the brief's key terms for the extra
candidates). ``text``: the rules that read numbers, dates, names and quotations. How the score
is made: docs/generation.md.
"""

from generation.quality import signals, text
from generation.quality.brief import (
    agreement,
    brief_terms,
    coverage,
    rebrief,
    unsupported_specifics,
)
from generation.quality.signals import (
    OFF_BRIEF_REASON,
    OFF_BRIEF_SHARE,
    SIGNALS_VERSION,
    TOPUP_MAX,
    TOPUP_STEER_BIAS,
    best_index,
    draft_signals,
    job_signals,
    needs_topup,
    quality_score,
    rank_order,
    topup_note,
    topup_steering,
)

__all__ = [
    "OFF_BRIEF_REASON",
    "OFF_BRIEF_SHARE",
    "SIGNALS_VERSION",
    "TOPUP_MAX",
    "TOPUP_STEER_BIAS",
    "agreement",
    "best_index",
    "brief_terms",
    "coverage",
    "draft_signals",
    "job_signals",
    "needs_topup",
    "quality_score",
    "rank_order",
    "rebrief",
    "signals",
    "text",
    "topup_note",
    "topup_steering",
    "unsupported_specifics",
]
