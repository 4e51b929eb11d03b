"""The triage list at 100,000 cases: constant query count and index-only plans (PostgreSQL)."""

from collections.abc import Callable, Iterator

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.models import User
from intake.selectors import CaseFilters, case_page_for_triage

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="plans are PostgreSQL's"),
]


@pytest.fixture(scope="module")
def hundred_thousand_cases(django_db_setup: None, django_db_blocker: pytest.FixtureRequest) -> Iterator[int]:
    """100,000 committed cases shared by this module (inserting them takes seconds); yields a middle id."""
    with django_db_blocker.unblock():
        author = User.objects.create(username="bulk_author")
        _insert(author.pk)
        with connection.cursor() as cursor:
            cursor.execute("SELECT (min(id) + max(id)) / 2 FROM intake_feedbackcase")
            middle = cursor.fetchone()[0]
        yield middle
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM intake_feedbackcase WHERE author_id = %s", [author.pk])
        author.delete()


def _insert(author_id: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO intake_feedbackcase (uid, source, source_url, external_id, author_id, author_name, scenario,
                prompt, bad_output, expected_output, language, tags, model_version, license_consent, data_license,
                status, status_reason, priority, vote_count, search_text, created_at, updated_at)
            SELECT gen_random_uuid(), (ARRAY['web','api','github'])[1 + i %% 3], '', '', %s, 'li_ming',
                '场景' || (i %% 200), '输入 ' || i || ' ' || md5(i::text), '', '输出 ' || i,
                (ARRAY['zh','en','mixed'])[1 + i %% 3], '[]'::jsonb, '', true, 'CC-BY-4.0',
                (ARRAY['new','accepted','rejected','needs-info','duplicate'])[1 + i %% 5], '', 0, 0,
                lower('场景' || (i %% 200) || ' 输入 ' || i || ' ' || md5(i::text)), now(), now()
            FROM generate_series(1, 100000) AS i
            """,
            [author_id],
        )
        cursor.execute("ANALYZE intake_feedbackcase")


def _plan(sql: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN " + sql)
        return "\n".join(row[0] for row in cursor.fetchall())


FILTERS = [
    CaseFilters(),
    CaseFilters(status="needs-info"),
    CaseFilters(source="github"),
    CaseFilters(language="en"),
    CaseFilters(scenario="场景7"),
    CaseFilters(status="accepted", language="zh"),
    CaseFilters(q="f00d"),
]


@pytest.mark.parametrize(
    "filters", FILTERS, ids=lambda f: ",".join(f"{k}={v}" for k, v in vars(f).items() if v) or "none"
)
def test_every_filter_pages_by_index_without_scanning_or_sorting(
    hundred_thousand_cases: None, filters: CaseFilters
) -> None:
    # A deep page (keyset cursor in the middle) must cost what the first page costs.
    for before in (None, 50_000):
        with CaptureQueriesContext(connection) as queries:
            page = case_page_for_triage(filters=filters, before=before)
        assert len(queries) == 1
        assert len(page.cases) == 50 or filters.q
        sql = queries.captured_queries[0]["sql"]
        plan = _plan(sql)
        # The cases table is what grows; a tiny joined table (authors) may be scanned.
        assert "Seq Scan on intake_feedbackcase" not in plan, plan
        assert "Sort" not in plan or "Bitmap" in plan, plan


def test_triage_page_query_count_does_not_grow_with_the_page(
    hundred_thousand_cases: int, maintainer: User, client_for: Callable
) -> None:
    client = client_for(maintainer)
    counts = []
    for url in ("/triage/", "/triage/?status=new", f"/triage/?before={hundred_thousand_cases}&language=en"):
        with CaptureQueriesContext(connection) as queries:
            response = client.get(url)
        assert response.status_code == 200
        assert response.content.decode().count('name="case_ids"') == 50
        counts.append(len(queries))
    assert len(set(counts)) == 1 and counts[0] <= 8, counts
