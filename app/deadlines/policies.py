"""Which deadline policy applies: pure functions of the policies and the interview's facts.

The first enabled policy by position (ties by creation, then id) whose match fits wins. A
match field that is given must equal the fact: the stage case-insensitively, the others
exactly. For default steps there is no step yet, so ``match.owner_role`` is ignored.
"""

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, TypeVar


@dataclass(frozen=True)
class InterviewFacts:
    """What a policy's match is compared with."""

    source: str
    stage: str | None
    job_id: str | None


class PolicyLike(Protocol):
    @property
    def id(self) -> uuid.UUID: ...
    @property
    def position(self) -> int: ...
    @property
    def enabled(self) -> bool: ...
    @property
    def match(self) -> Mapping[str, Any]: ...
    @property
    def due_rule(self) -> Mapping[str, Any] | None: ...
    @property
    def default_step(self) -> Mapping[str, Any] | None: ...
    @property
    def created_at(self) -> datetime: ...


P = TypeVar("P", bound=PolicyLike)


def by_position(policies: Iterable[P]) -> list[P]:
    return sorted(policies, key=lambda p: (p.position, p.created_at, p.id))


def _fits(match: Mapping[str, Any], facts: InterviewFacts, owner_role: str | None) -> bool:
    for name, wanted in match.items():
        if wanted is None:
            continue
        if name == "stage":
            if facts.stage is None or facts.stage.casefold() != str(wanted).casefold():
                return False
        elif name == "source":
            if facts.source != wanted:
                return False
        elif name == "job_id":
            if facts.job_id != wanted:
                return False
        elif name == "owner_role":
            if owner_role is not None and owner_role != wanted:
                return False
        else:
            return False  # a field this version does not know: never guess
    return True


def matching_due_policy(
    policies: Iterable[P], interview_facts: InterviewFacts, owner_role: str
) -> P | None:
    """The policy that gives a step without a due time its due time, if any."""
    for policy in by_position(policies):
        usable = policy.enabled and policy.due_rule is not None
        if usable and _fits(policy.match, interview_facts, owner_role):
            return policy
    return None


def may_match_once_known(
    policies: Iterable[P], interview_facts: InterviewFacts, owner_role: str
) -> bool:
    """Whether a policy with a due_rule would match once the interview's facts that are not
    known yet (no stage, no job) are: a step without a due time may wait for them."""
    unknown = {"stage": interview_facts.stage is None, "job_id": interview_facts.job_id is None}
    for policy in by_position(policies):
        if not (policy.enabled and policy.due_rule is not None):
            continue
        known = {k: v for k, v in policy.match.items() if v is None or not unknown.get(k)}
        if len(known) < len(policy.match) and _fits(known, interview_facts, owner_role):
            return True
    return False


def matching_default_step_policy(
    policies: Iterable[P], interview_facts: InterviewFacts
) -> P | None:
    """The policy whose default step a completed interview without a step gets, if any."""
    for policy in by_position(policies):
        usable = policy.enabled and policy.default_step is not None
        if usable and _fits(policy.match, interview_facts, None):
            return policy
    return None
