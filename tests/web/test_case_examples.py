"""A request's several example pairs: stored on its case, each one a dataset row, each one reported back."""

from collections.abc import Callable
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from accounts.models import User
from curation.models import DatasetVersion
from curation.selectors import dataset_version_abspath
from curation.services import batch_approve, batch_create, dataset_split, dataset_version_build
from ghsync.services import SyncSummary, report_release
from intake.models import CaseEvent, CaseStatus, FeedbackCase
from intake.services import CaseInput, case_create, case_transition
from releases.models import Release, ReleaseStatus
from training.models import Evaluation, EvaluationStatus, RunStatus, TrainingRun

from .conftest import MATH_CASE
from .ghsync_support import *  # noqa: F403 - the fixtures: github, clock, source, sync
from .ghsync_support import REPO
from .github_fake import FakeGithub

pytestmark = pytest.mark.django_db
Sync = Callable[..., SyncSummary]
EXT = "127.0.0.1/IEIT-Yuan/Yuan-2.0"
SQL_COMMENT = 1842200104  # linxi2023's numbered list of three 输入/输出 pairs


def case_for(comment_id: int) -> FeedbackCase:
    return FeedbackCase.objects.get(external_id=f"{EXT}#1/comment-{comment_id}")


@pytest.fixture(autouse=True)
def _artifacts(settings, tmp_path: Path) -> None:
    settings.ARTIFACT_ROOT = tmp_path / "artifacts"


def test_a_request_with_three_pairs_becomes_one_case_with_two_extra_examples(sync: Sync) -> None:
    sync()
    sql = case_for(SQL_COMMENT)
    assert FeedbackCase.objects.filter(external_id__startswith=f"{EXT}#1/comment-{SQL_COMMENT}").count() == 1
    assert sql.prompt.startswith("查询每个部门工资最高的员工姓名") and "MAX(salary)" in sql.expected_output
    assert [pair["input"] for pair in sql.extra_examples] == [
        "统计2023年每个月的订单数（表 orders(id, created_at)）",
        "找出没有下过单的客户（customers(id, name), orders(customer_id)）",
    ]
    assert "GROUP BY month" in sql.extra_examples[0]["output"] and "LEFT JOIN" in sql.extra_examples[1]["output"]
    assert "找出没有下过单的客户" in sql.search_text
    assert case_for(1842200102).extra_examples == []  # one pair: nothing extra


def test_editing_the_request_updates_its_extra_examples(sync: Sync, github: FakeGithub) -> None:
    sync()
    body = "场景需求：SQL\n1. 输入：查一\n   输出：SELECT 1;\n2. 输入：查二\n   输出：SELECT 2;"
    github.edit_comment(REPO, SQL_COMMENT, body=body, updated_at="2024-02-10T00:00:00Z")
    sync()
    case = case_for(SQL_COMMENT)
    assert (case.prompt, case.extra_examples) == ("查一", [{"input": "查二", "output": "SELECT 2;"}])
    edit = CaseEvent.objects.get(case=case, action="edited")
    assert len(edit.changes["extra_examples"]["from"]) == 2 and len(edit.changes["extra_examples"]["to"]) == 1
    # An edit that leaves no complete example keeps the last good ones, the extras included.
    github.edit_comment(REPO, SQL_COMMENT, body="SQL 还是写错了。", updated_at="2024-02-11T00:00:00Z")
    sync()
    case.refresh_from_db()
    assert (case.prompt, case.extra_examples) == ("查一", [{"input": "查二", "output": "SELECT 2;"}])


def _accepted(case: FeedbackCase, maintainer: User) -> FeedbackCase:
    return case_transition(case=case, to_status=CaseStatus.ACCEPTED, actor=maintainer)


def test_every_pair_is_a_dataset_row_and_a_case_stays_on_one_side(sync: Sync, maintainer: User) -> None:
    import datasets

    sync()
    sql = _accepted(case_for(SQL_COMMENT), maintainer)
    others = [_accepted(case_for(pk), maintainer) for pk in (1842200102, 1842200114, 1842200103)]
    batch = batch_approve(batch=batch_create(by=maintainer, case_ids=[sql.pk, *[c.pk for c in others]]), by=maintainer)
    version = dataset_version_build(version_id=DatasetVersion.objects.get(batch=batch).pk)
    loaded = datasets.load_from_disk(str(dataset_version_abspath(version=version)))
    rows = {row["id"]: (name, row) for name in ("train", "eval") for row in loaded[name]}
    ids = [f"case-{sql.pk}", f"case-{sql.pk}-ex2", f"case-{sql.pk}-ex3"]
    assert sorted(rows) == sorted([*ids, *(f"case-{c.pk}" for c in others)])
    assert version.train_rows + version.eval_rows == 6
    # Alone in its scenario, the SQL case would lose one of its three rows to eval if rows were split one by one.
    assert len({rows[row_id][0] for row_id in ids}) == 1
    first, second, third = (rows[row_id][1] for row_id in ids)
    assert (first["prompt"], first["response"]) == (sql.prompt, sql.expected_output)
    assert (second["prompt"], second["response"]) == (sql.extra_examples[0]["input"], sql.extra_examples[0]["output"])
    assert (third["prompt"], third["response"]) == (sql.extra_examples[1]["input"], sql.extra_examples[1]["output"])
    shared = ("scenario", "language", "source", "weight", "case_url", "license")
    assert len({tuple(row[key] for key in shared) for row in (first, second, third)}) == 1


def test_the_split_keeps_every_row_of_a_case_together() -> None:
    rows = [
        {"id": f"case-{pk}" + (f"-ex{n}" if n > 1 else ""), "scenario": "s", "prompt": f"p{pk}.{n}", "response": "r"}
        for pk in range(1, 11)
        for n in range(1, 4)
    ]
    splits = dataset_split(rows=rows)
    assert splits == dataset_split(rows=rows[::-1])
    side = {row["id"]: name for name, part in splits.items() for row in part}
    for pk in range(1, 11):
        assert side[f"case-{pk}"] == side[f"case-{pk}-ex2"] == side[f"case-{pk}-ex3"]
    assert (len(splits["train"]), len(splits["eval"])) == (24, 6)  # 2 of the 10 cases held out, with all their rows


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ((("", "SELECT 1;"),), "Additional example 1: the input must be a non-empty string."),
        ((("查一", "SELECT 1;"), ("查二", "   ")), "Additional example 2: the output must be a non-empty string."),
        ((("长" * 20_001, "SELECT 1;"),), "Additional example 1: the input must be at most 20000 characters"),
        ((("查\x00一", "SELECT 1;"),), "Additional example 1: the input: Contains an invalid control character"),
        ((("q", "a"),) * 51, "At most 50 additional examples."),
    ],
)
def test_bad_extra_examples_are_refused_with_a_clear_message(contributor: User, extra: tuple, message: str) -> None:
    with pytest.raises(ValidationError) as info:
        case_create(author=contributor, data=CaseInput(**{**MATH_CASE.__dict__, "extra_examples": extra}))
    assert info.value.message_dict["extra_examples"][0].startswith(message)
    assert not FeedbackCase.objects.exists()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"input": "q", "output": "a"}, "Additional examples must be a list of input/output pairs."),
        ([{"input": "q"}], "Additional example 1 must have exactly the keys 'input' and 'output'."),
        ([{"input": "q", "output": 3}], "Additional example 1: the output must be a non-empty string."),
    ],
)
def test_the_model_refuses_malformed_extra_examples(make_case: Callable, value: object, message: str) -> None:
    case = make_case()
    case.extra_examples = value
    with pytest.raises(ValidationError) as info:
        case.full_clean(exclude=["author", "duplicate_of"])
    assert info.value.message_dict == {"extra_examples": [message]}


def test_web_cases_have_no_extra_examples_and_valid_ones_are_stored(contributor: User) -> None:
    assert case_create(author=contributor, data=MATH_CASE).extra_examples == []
    data = CaseInput(**{**MATH_CASE.__dict__, "extra_examples": (("1+1=?", "2"), ("2+2=?", "4"))})
    case = FeedbackCase.objects.get(pk=case_create(author=contributor, data=data).pk)
    assert case.extra_examples == [{"input": "1+1=?", "output": "2"}, {"input": "2+2=?", "output": "4"}]


def _score(prediction: str, chrf: float) -> dict[str, object]:
    return {"prediction": prediction, "exact_match": 0.0, "chrf": chrf, "loss": 1.0}


def test_the_report_back_shows_before_and_after_for_every_example(sync: Sync, maintainer: User) -> None:
    sync()
    sql = _accepted(case_for(SQL_COMMENT), maintainer)
    poem = _accepted(case_for(1842200102), maintainer)  # wangyx-nlp's: a reply of its own
    batch = batch_approve(batch=batch_create(by=maintainer, case_ids=[sql.pk, poem.pk]), by=maintainer)
    version = DatasetVersion.objects.get(batch=batch)
    run = TrainingRun.objects.create(dataset_version=version, base_checkpoint="demo", status=RunStatus.SUCCEEDED)
    examples = [(sql.prompt, sql.expected_output), *((p["input"], p["output"]) for p in sql.extra_examples)]
    Evaluation.objects.create(run=run, status=EvaluationStatus.PASSED, per_case=[
        {"id": f"case-{sql.pk}" + (f"-ex{n}" if n > 1 else ""), "prompt": prompt, "reference": reference,
         "base": _score(f"旧答案{n}", 10.0 + n), "tuned": _score(f"新答案{n}", 50.0 + n), "delta_chrf": 40.0}
        for n, (prompt, reference) in enumerate(examples, start=1)
    ])  # fmt: skip
    release = Release.objects.create(tag="yuan2-2b-cotrain-2024-03", run=run, status=ReleaseStatus.PUBLISHED,
                                     published_at=timezone.now())  # fmt: skip
    plan = next(plan for plan in report_release(release=release, dry_run=True) if plan.key.endswith(":linxi2023"))
    assert plan.body.startswith("@linxi2023 ")
    for n in (1, 2, 3):
        assert f"示例 {n} / Example {n}:" in plan.body
        assert f"- 发布前 Before: 旧答案{n} (chrF {10 + n:.1f})" in plan.body
        assert f"- 发布后 After: 新答案{n} (chrF {50 + n:.1f})" in plan.body
    assert "- 输入 Input: 找出没有下过单的客户" in plan.body and "- 输入 Input: 统计2023年每个月的订单数" in plan.body
    assert "not in the held-out evaluation" not in plan.body
