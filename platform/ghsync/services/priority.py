"""Priority of GitHub requests, by the co-training plan's rule.

"When there are too many requests, priority goes to developers who have reported
more model problems": a requester's standing is the number of problems they have
reported (their GitHub requests that were not withdrawn, rejected or duplicates),
and each vote (on the platform, or 👍 on GitHub) adds one. One report outweighs
`REPORT_WEIGHT - 1` votes, so the plan's rule comes first and votes break ties.
"""

from collections import Counter
from dataclasses import dataclass

from ghsync.models import GithubItem, ItemState
from intake.models import CaseStatus
from intake.services import cases_set_priority

REPORT_WEIGHT = 10
PRIORITY_MAX = 32767  # FeedbackCase.priority is a SmallIntegerField
NOT_COUNTED = {CaseStatus.WITHDRAWN, CaseStatus.REJECTED, CaseStatus.DUPLICATE}


@dataclass(frozen=True)
class PriorityWhy:
    priority: int
    reports: int
    platform_votes: int
    github_votes: int
    login: str

    def explain(self) -> str:
        return (
            f"{self.login} reported {self.reports} problem{'s' if self.reports != 1 else ''} "
            f"(×{REPORT_WEIGHT} = {self.reports * REPORT_WEIGHT}) + {self.platform_votes + self.github_votes} votes "
            f"({self.platform_votes} here, {self.github_votes} 👍 on GitHub) = {self.priority}"
        )


def priority_for(*, reports: int, platform_votes: int, github_votes: int, login: str) -> PriorityWhy:
    score = min(reports * REPORT_WEIGHT + platform_votes + github_votes, PRIORITY_MAX)
    return PriorityWhy(score, reports, platform_votes, github_votes, login)


def report_counts(*, logins: set[str]) -> Counter[str]:
    rows = (
        GithubItem.objects.filter(author_login__in=logins, state=ItemState.CASE, case__isnull=False)
        .exclude(case__status__in=NOT_COUNTED)
        .values_list("author_login", flat=True)
    )
    return Counter(rows)


def priorities_refresh(*, logins: set[str]) -> int:
    """Recompute the priority of every GitHub case of these requesters; returns how many changed."""
    if not logins:
        return 0
    reports = report_counts(logins=logins)
    rows = GithubItem.objects.filter(author_login__in=logins, case__isnull=False).values_list(
        "case_id", "author_login", "plus_one", "case__vote_count"
    )
    priorities = {
        case_id: priority_for(reports=reports[login], platform_votes=votes, github_votes=plus_one, login=login).priority
        for case_id, login, plus_one, votes in rows
    }
    return cases_set_priority(priorities=priorities)
