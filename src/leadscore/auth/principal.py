"""The authenticated caller, shared by every domain that acts for a team."""

from __future__ import annotations

from dataclasses import dataclass, replace

from leadscore.engine.model import ScoringPolicy


@dataclass(frozen=True)
class Principal:
    """Who is calling: a key of one team, with one role."""

    key_id: int
    team_id: int
    team_name: str
    role: str
    commission_rate: float | None = None
    #: When the credential stops (a token's `exp`, epoch seconds); None for an API key.
    expires_at: float | None = None
    #: The team's own class and escalation thresholds (None: the serving model's).
    hot_threshold: float | None = None
    warm_threshold: float | None = None
    escalation_confidence: float | None = None

    @property
    def policy_overrides(self) -> tuple[float | None, float | None, float | None, float | None]:
        """What of its team's scoring policy the team set itself: part of a cached score's
        signature, so a change of settings never serves an answer made under the old ones."""
        return (
            self.hot_threshold,
            self.warm_threshold,
            self.escalation_confidence,
            self.commission_rate,
        )


def team_policy(model: ScoringPolicy, principal: Principal) -> ScoringPolicy:
    """The model's policy with what the caller's team set itself (its settings) in its place."""
    hot, warm, escalation, rate = principal.policy_overrides
    if hot is None and warm is None and escalation is None and rate is None:
        return model
    return replace(
        model,
        hot=model.hot if hot is None else hot,
        warm=model.warm if warm is None else warm,
        escalation_confidence=model.escalation_confidence if escalation is None else escalation,
        commission_rate=model.commission_rate if rate is None else rate,
    )
