"""How much is known about a lead, and which missing facts an agent should ask about first.

`evidence` is the share of the model's attention (its conversion head's split gain) that falls
on features this lead actually has: a portal lead without site activity or a bare phone
number says little, however confident the trees are about leads like it. `ask_next` scores
the lead again with each missing fact filled in both ways (one vectorised pass) and names the
facts whose answer would move its score most.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import numpy as np
from numpy.typing import NDArray

from leadscore.engine.attributes import AttributeSpec
from leadscore.engine.model import LeadModel

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]

#: Features whose zero means "nothing was given" (a count of what the lead told us), not a fact.
ZERO_IS_UNKNOWN: Final = frozenset(
    {"budget_clarity", "property_criteria", "contact_completeness", "interaction_count"}
)
#: Features known exactly when another one is: a quiet week says something only about a lead
#: that has been in touch at all.
KNOWN_WITH: Final = {"interactions_last_7d": "interaction_count"}
ASK_AT_MOST: Final = 3


@dataclass(frozen=True, slots=True)
class Question:
    """A missing fact to ask about, and the lead's score under either answer."""

    field: str
    question: str
    score_if_yes: float
    score_if_no: float


@dataclass(frozen=True, slots=True)
class Qualification:
    """Whether a person (or an LLM) should qualify the lead before it is trusted, why, and
    what to ask first."""

    needed: bool
    reasons: tuple[str, ...]
    ask_next: tuple[Question, ...]


@dataclass(frozen=True, slots=True)
class Fact:
    """An askable fact: the lead_data field its answer fills, and the features each answer sets."""

    field: str
    question: str
    asks_for: str  # the feature whose being unknown makes the question worth asking
    yes: tuple[tuple[str, float], ...]
    no: tuple[tuple[str, float], ...]


FACTS: Final[tuple[Fact, ...]] = (
    # Each answer sets what filling in that lead_data field would: `yes` is the lead with
    # `pre_approved: true`, `financing: "cash"`, `timeline: "1-3 months"`, `first_time_buyer:
    # true`, a neighbourhood, a property type and bedrooms, or a clear budget.
    Fact("pre_approved", "Are you pre-approved for a mortgage?", "pre_approved",
         (("pre_approved", 1.0),), (("pre_approved", 0.0),)),
    Fact("financing", "Are you paying cash?", "financing_readiness",
         (("financing_readiness", 3.0),), (("financing_readiness", 1.0),)),
    Fact("timeline", "Are you hoping to buy within the next 3 months?", "timeline_months",
         (("timeline_months", 2.0), ("timeline_urgent", 1.0)),
         (("timeline_months", 9.0), ("timeline_urgent", 0.0))),
    Fact("budget_range", "Do you have a price range in mind?", "budget_clarity",
         (("budget_clarity", 3.0),), (("budget_clarity", 0.0),)),
    Fact("location_preference", "Have you settled on a neighbourhood?", "location_specificity",
         (("location_specificity", 2.0), ("location_terms", 2.0)),
         (("location_specificity", 0.0), ("location_terms", 1.0))),
    Fact("first_time_buyer", "Is this your first home purchase?", "first_time_buyer",
         (("first_time_buyer", 1.0),), (("first_time_buyer", 0.0),)),
    Fact("property_type", "Do you know the type of home and how many bedrooms you need?",
         "property_criteria", (("property_criteria", 2.0),), (("property_criteria", 0.0),)),
)  # fmt: skip


def team_facts(attributes: AttributeSpec) -> tuple[Fact, ...]:
    """A team's yes/no fields are questions too, asked by the field's own name."""
    return tuple(
        Fact(f"attributes.{name}", f"{name}: yes or no?", name, ((name, 1.0),), ((name, 0.0),))
        for name in attributes.numeric
        if attributes.kinds.get(name) == "boolean"
    )


@dataclass(frozen=True, slots=True)
class _Plan:
    """A fact resolved against one model's columns."""

    fact: Fact
    column: int
    yes: tuple[tuple[int, float], ...]
    no: tuple[tuple[int, float], ...]


class Qualifier:
    """Evidence and questions for one model; read-only, safe to share across threads."""

    def __init__(self, model: LeadModel) -> None:
        names = model.model_features_
        index = {name: i for i, name in enumerate(names)}
        gain = np.asarray(
            model.boosters_["conversion"].feature_importance(importance_type="gain"),
            dtype=np.float64,
        )
        total = gain.sum()
        self.weights: FloatArray = (
            gain / total if total > 0 else np.full(len(names), 1.0 / max(len(names), 1))
        )
        self._zero_unknown = np.array([name in ZERO_IS_UNKNOWN for name in names], dtype=bool)
        self._known_with = [
            (index[name], index[other])
            for name, other in KNOWN_WITH.items()
            if name in index and other in index
        ]
        self._plans = tuple(
            _Plan(
                fact,
                index[fact.asks_for],
                tuple((index[f], v) for f, v in fact.yes if f in index),
                tuple((index[f], v) for f, v in fact.no if f in index),
            )
            for fact in FACTS + team_facts(model.attributes_)
            # A fact the trees never split on cannot move the score: not worth a question.
            if fact.asks_for in index
            and any(gain[index[f]] > 0 for f, _ in (*fact.yes, *fact.no) if f in index)
        )
        # Each plan's answers as whole rows (mask, values): a lead's what-if rows are two
        # np.where calls, however many facts are open.
        width = len(names)
        self._plan_columns = np.array([plan.column for plan in self._plans], dtype=np.int64)
        self._answers = tuple(
            self._answer_rows([getattr(plan, side) for plan in self._plans], width)
            for side in ("yes", "no")
        )

    @staticmethod
    def _answer_rows(
        answers: list[tuple[tuple[int, float], ...]], width: int
    ) -> tuple[BoolArray, FloatArray]:
        """Per plan, which columns an answer sets and to what."""
        mask = np.zeros((len(answers), width), dtype=bool)
        values = np.zeros((len(answers), width), dtype=np.float64)
        for row, answer in enumerate(answers):
            for column, value in answer:
                mask[row, column] = True
                values[row, column] = value
        return mask, values

    def known(self, x: FloatArray) -> BoolArray:
        """Which of each lead's model inputs carry a fact about it."""
        known: BoolArray = ~np.isnan(x)
        if self._zero_unknown.any():
            known[:, self._zero_unknown] &= x[:, self._zero_unknown] > 0
        for column, other in self._known_with:
            known[:, column] &= known[:, other]
        return known

    def evidence(self, known: BoolArray) -> FloatArray:
        """0–1 per lead: the share of the model's attention on what is known."""
        share: FloatArray = known.astype(np.float64) @ self.weights
        return np.asarray(np.round(np.clip(share, 0.0, 1.0), 3), dtype=np.float64)

    def ask_next(
        self, x: FloatArray, known: BoolArray, probability: Callable[[FloatArray], FloatArray]
    ) -> list[tuple[Question, ...]]:
        """Per lead, up to three missing facts whose answer moves its score most: every open
        question of every lead scored both ways in one call of `probability`."""
        if not self._plans:
            return [() for _ in range(len(x))]
        leads, plans = np.nonzero(~known[:, self._plan_columns])
        if not len(leads):
            return [() for _ in range(len(x))]
        base = x[leads]
        (yes_mask, yes_values), (no_mask, no_values) = self._answers
        yes = np.where(yes_mask[plans], yes_values[plans], base)
        no = np.where(no_mask[plans], no_values[plans], base)
        # Each open question's yes row, then its no row.
        scores = np.round(
            probability(np.stack([yes, no], axis=1).reshape(-1, x.shape[1])) * 100.0, 1
        ).tolist()
        out: list[list[tuple[float, Question]]] = [[] for _ in range(len(x))]
        for k, (lead, plan) in enumerate(zip(leads.tolist(), plans.tolist(), strict=True)):
            if_yes, if_no = scores[2 * k], scores[2 * k + 1]
            if if_yes != if_no:
                fact = self._plans[plan].fact
                question = Question(fact.field, fact.question, if_yes, if_no)
                out[lead].append((abs(if_yes - if_no), question))
        return [
            tuple(q for _, q in sorted(found, key=lambda m: -m[0])[:ASK_AT_MOST]) for found in out
        ]
