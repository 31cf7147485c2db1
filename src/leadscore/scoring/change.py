"""Why a lead's score moved since its previous score: the points, and the groups that moved it."""

from __future__ import annotations

from typing import Any, Final

TOP_CHANGES: Final = 3
MIN_POINTS: Final = 0.05  # below this a group did not move the score (rounding)


def score_change(previous: dict[str, Any], current: dict[str, Any]) -> dict[str, Any]:
    """Points since `previous` (both score bodies) and the top contributions to that change.

    Contributions are per reason group (group points add up to the score minus the base, so
    their differences add up to the change); each names the current reason of that group, or
    the previous one when the group's fact is gone, so the change reads "+14: Pre-approved for
    a mortgage".
    """
    points = round(current["ml_score"] - previous["ml_score"], 2)
    before = previous.get("group_contributions") or {}
    after = current.get("group_contributions") or {}
    moved = sorted(
        (
            (group, round(after.get(group, 0.0) - before.get(group, 0.0), 2))
            for group in dict.fromkeys([*after, *before])
        ),
        key=lambda item: -abs(item[1]),
    )
    top = [
        {"group": group, "points": delta,
         "text": _reason_text(current, group) or _reason_text(previous, group)}
        for group, delta in moved[:TOP_CHANGES]
        if abs(delta) >= MIN_POINTS
    ]  # fmt: skip
    lead = top[0]["text"] if top and top[0]["text"] else None
    return {
        "points": points,
        "from_score": previous["ml_score"],
        "since": previous.get("scored_at"),
        "model_changed": previous.get("model_version") != current.get("model_version"),
        "top": top,
        "summary": f"{points:+.1f}: {lead}" if lead else f"{points:+.1f}",
    }


def _reason_text(body: dict[str, Any], group: str) -> str | None:
    """The biggest reason of that group in a score body, without its points suffix."""
    reasons = [r for r in (body.get("reasons") or []) if r.get("group") == group]
    if not reasons:
        return None
    text: str = max(reasons, key=lambda r: abs(r["points"]))["text"]
    return text.rsplit(": ", 1)[0] if text.endswith("points") else text
