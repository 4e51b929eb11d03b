"""Curation in a dataset build and at triage: near-duplicates, decontamination, quality, provenance, withdrawal.

The detectors have their own tests (test_pii, test_neardup, test_decontam, test_quality);
these check what the platform does with them: the rows a version holds and why, the
manifest and the card, the review page before approval, triage's duplicate links, the
benchmark registry and the withdrawal path.
"""

import io
import json
from pathlib import Path

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from accounts.models import User
from curation.models import BenchmarkItem, BenchmarkSet, DatasetVersion
from curation.pipeline import EvalItem, curate
from curation.selectors import dataset_version_abspath
from curation.services import batch_approve, batch_create, dataset_version_build
from curation.services.benchmarks import benchmark_register
from intake.models import CaseStatus, FeedbackCase
from intake.selectors import cases_likely_duplicates
from intake.services import CaseInput, case_create, case_transition, case_update_from_source
from releases.services import release_publish

from .loop_factories import accepted_cases, finished_run, write_export

pytestmark = pytest.mark.django_db

POLITE = "请把下面这句话改写得更礼貌：快点把第{n}季度的报表发给我，今天下班前必须交。"
POLITE_ANSWER = "麻烦您在今天下班前把第{n}季度的报表发给我，辛苦了，谢谢！"
# The general regression set's item general-trans-zh-en-1, pasted as a request.
PASTED = "帮我做一下这道题：把这句话翻译成英文：今天的会议改到下午三点。"
BENCHMARK = [
    {"id": "gsm-1", "prompt": "学校图书馆有故事书480本，科技书比故事书少120本，两种书一共有多少本？",
     "answer": "科技书480 − 120 = 360本，一共480 + 360 = 840本。"},
    {"id": "gsm-2", "question": "A train travels 60 km in the first hour and 80 km in the second hour. "
                                "What is its average speed over the two hours?", "answer": 70},
]


def _case(author: User, maintainer: User, prompt: str, answer: str, scenario: str, **extra: object) -> FeedbackCase:
    data = CaseInput(scenario=scenario, prompt=prompt, expected_output=answer, language="zh",
                     license_consent=True, **extra)  # type: ignore[arg-type]
    return case_transition(case=case_create(author=author, data=data), to_status=CaseStatus.ACCEPTED,
                           actor=maintainer)


@pytest.fixture(autouse=True)
def _artifacts(settings, tmp_path: Path) -> None:
    settings.ARTIFACT_ROOT = tmp_path / "artifacts"
    settings.SITE_URL = "https://cotrain.example.org"


@pytest.fixture
def curated_batch(contributor: User, maintainer: User) -> dict[str, FeedbackCase]:
    """Eight clean requests plus one of each thing curation is for, each in a scenario of its own so that
    the split keeps it in train (a scenario of one group has no eval share)."""
    accepted_cases(author=contributor, maintainer=maintainer)
    return {
        "first": _case(contributor, maintainer, POLITE.format(n=3), POLITE_ANSWER.format(n=3), "礼貌改写"),
        "copy": _case(contributor, maintainer, POLITE.format(n=4), POLITE_ANSWER.format(n=4), "礼貌改写"),
        "pasted": _case(contributor, maintainer, PASTED, "Today's meeting has been moved to 3 p.m.", "翻译"),
        "placeholder": _case(contributor, maintainer, "写一首关于秋天的五言绝句。", "TODO", "诗歌"),
        "benchmark": _case(contributor, maintainer, "请解答：" + BENCHMARK[0]["prompt"], BENCHMARK[0]["answer"],
                           "应用题"),
        "personal": _case(contributor, maintainer, "我的手机号是13812345678，请写一条取快递的提醒短信。",
                          "【提醒】您的快递已到驿站，请凭手机尾号5678取件。", "短信（李雷 li.lei@example.com 的需求）"),
    }


def _rows(version: DatasetVersion) -> dict[str, list[dict]]:
    from datasets import load_from_disk

    loaded = load_from_disk(str(dataset_version_abspath(version=version)))
    return {name: loaded[name].to_list() for name in ("train", "eval")}


def _build(maintainer: User, name: str) -> DatasetVersion:
    batch = batch_approve(batch=batch_create(by=maintainer, name=name), by=maintainer)
    return dataset_version_build(version_id=DatasetVersion.objects.get(batch=batch).pk)


def test_a_build_drops_copies_pasted_eval_items_and_placeholders_and_records_why(
    curated_batch: dict[str, FeedbackCase], maintainer: User
) -> None:
    benchmark_register(name="mini-gsm", data="\n".join(json.dumps(b, ensure_ascii=False) for b in BENCHMARK).encode(),
                       by=maintainer)
    version = _build(maintainer, "plan-curated")
    assert version.status == "ready", version.error
    rows = _rows(version)
    kept = {row["case_id"] for split in rows.values() for row in split}
    case = {name: c.pk for name, c in curated_batch.items()}
    assert case["first"] in kept and case["personal"] in kept
    assert not {case["copy"], case["pasted"], case["placeholder"], case["benchmark"]} & kept

    curation = version.manifest["curation"]
    why = {row["case_id"]: (row["filter"], row["reason"]) for row in curation["dropped"]}
    assert why[case["copy"]][0] == "near_duplicate" and f"case-{case['first']}" in why[case["copy"]][1]
    assert why[case["pasted"]][0] == "decontamination" and "general-trans-zh-en-1" in why[case["pasted"]][1]
    assert why[case["benchmark"]][0] == "decontamination" and "benchmark:mini-gsm" in why[case["benchmark"]][1]
    assert why[case["placeholder"]][0] == "quality" and "placeholder" in why[case["placeholder"]][1]
    filters = curation["filters"]
    assert (filters["near_duplicate"]["dropped"], filters["decontamination"]["dropped"]) == (1, 2)
    assert filters["decontamination"]["why"] == {"benchmark": 1, "general": 1}
    assert filters["personal_data"]["changed"] == 1 and filters["personal_data"]["why"] == {"EMAIL": 1, "PHONE": 1}
    assert curation["decontamination_sources"]["general"] == 42
    assert curation["decontamination_sources"]["benchmark:mini-gsm"] == 2

    # Provenance on every row: its case and report, what changed it, what it passed, its cluster.
    everything = [row for split in rows.values() for row in split]
    assert all(row["filters"] == ["quality", "personal_data", "near_duplicate", "decontamination"]
               for row in everything)
    (personal,) = [row for row in everything if row["case_id"] == case["personal"]]
    assert personal["scrubbed"] == ["EMAIL", "PHONE"] and "<PHONE>" in personal["prompt"]
    assert personal["scenario"] == "短信（李雷 <EMAIL> 的需求）"  # the scenario is people's text too
    assert personal["case_url"].endswith(f"/cases/{case['personal']}/") and personal["cluster_id"].startswith("c-")
    assert version.progress == {"stage": "ready", "done": 1, "total": 1}

    card = (dataset_version_abspath(version=version) / "README.md").read_text(encoding="utf-8")
    assert "## Curation" in card and f"case-{case['copy']}" in card and "general-trans-zh-en-1" in card
    assert "| decontamination | 2 |" in card


def test_the_review_page_shows_what_approval_would_drop(
    curated_batch: dict[str, FeedbackCase], maintainer: User, client_for
) -> None:
    batch = batch_create(by=maintainer, name="plan-review")
    page = client_for(maintainer).get(reverse("curation:batch_detail", args=[batch.pk])).content.decode()
    assert "preview: what approving now would build" in page
    dropped = page.split('id="dropped-rows"')[1].split("</table>")[0]
    for name in ("copy", "pasted", "placeholder"):
        assert f"case-{curated_batch[name].pk}" in dropped
    assert f"case-{curated_batch['first'].pk}<" not in dropped
    assert "13812345678" not in dropped  # the preview shows the scrubbed text


def test_a_cluster_keeps_k_requests_and_stays_on_one_side_of_the_split() -> None:
    """Pure pipeline: with K=2 both copies of each request stay, always on the same side."""
    requests = [
        ("把第{n}季度的销售报表改得更正式，口语都换掉。", "以下是第{n}季度销售报表的正式版本。"),
        ("帮我写一封邀请函，邀请{n}位客户参加下周的新品发布会。", "尊敬的客户：诚邀您出席新品发布会，名额{n}位。"),
        ("Summarise this paragraph in {n} words: the release was delayed by a failing test.",
         "The release slipped because a test kept failing ({n} words)."),
        ("用Python写一个函数，返回列表里第{n}大的数。", "def kth_largest(xs):\n    return sorted(xs)[-{n}]"),
        ("将这句话翻译成英文：我们计划在{n}月底上线新版本。",
         "We plan to launch the new version at the end of month {n}."),
        ("一个长方形长{n}厘米，宽比长短3厘米，面积是多少？", "宽是{n}−3厘米，面积等于长乘宽。"),
        ("Write a SQL query that lists the {n} most recent orders with their customer names.",
         "SELECT o.id, c.name FROM orders o JOIN customers c ON c.id = o.customer_id ORDER BY o.created_at DESC "
         "LIMIT {n};"),
        ("给我的请假条润色一下：我{n}号家里有事，想请一天假。",
         "您好，因{n}日家中有事需要处理，特申请事假一天，望批准。"),
        ("列出{n}种适合在阳台种植的蔬菜，并说明光照要求。", "以下{n}种蔬菜适合阳台：小番茄喜全日照，生菜耐半阴。"),
        ("How do I convert {n} kilometres to miles by hand?", "Multiply {n} by 0.621 to get the distance in miles."),
        ("帮我把会议纪要整理成{n}条要点，去掉寒暄的部分。", "会议要点共{n}条：一、确定上线时间；二、分配测试任务。"),
        ("写一首{n}行的小诗，主题是城市夜晚的地铁。", "末班地铁穿过灯火，{n}行诗写不尽城市的疲惫与温柔。"),
    ]
    rows = []
    for i, (prompt, response) in enumerate(requests):
        for copy, n in enumerate((3 + i, 40 + i)):
            rows.append({"id": f"case-{10 * i + copy}", "case_id": 10 * i + copy, "scenario": "改写",
                         "language": "zh", "weight": 1.0, "prompt": prompt.format(n=n),
                         "response": response.format(n=n)})
    topics = requests
    pairs = [(rows[2 * i]["id"], rows[2 * i + 1]["id"]) for i in range(len(topics))]
    kept = curate(rows=rows, keep_per_cluster=2)
    side = {row["id"]: name for name, split in kept.splits.items() for row in split}
    cluster = {row["id"]: row["cluster_id"] for split in kept.splits.values() for row in split}
    assert len(side) == len(rows) and kept.clusters == len(topics)
    assert all(side[a] == side[b] and cluster[a] == cluster[b] for a, b in pairs)
    assert {side[a] for a, _ in pairs} == {"train", "eval"}  # the split did put clusters on both sides
    one = curate(rows=rows, keep_per_cluster=1)
    assert len(one.dropped) == len(topics) and all(d.filter == "near_duplicate" for d in one.dropped)
    assert {d.id for d in one.dropped} == {b for _, b in pairs}  # the earlier request of each pair stays
    with pytest.raises(ValueError, match="at least 1"):
        curate(rows=rows, keep_per_cluster=0)


def test_a_requests_own_examples_are_not_duplicates_of_each_other(contributor: User, maintainer: User) -> None:
    extra = tuple((f"计算：{a} × {b} = ？", f"{a} × {b} = {a * b}。") for a, b in ((12, 7), (23, 4), (31, 9)))
    case = _case(contributor, maintainer, "计算：15 × 6 = ？", "15 × 6 = 90。", "乘法", extra_examples=extra)
    accepted_cases(author=contributor, maintainer=maintainer, count=3)
    version = _build(maintainer, "plan-examples")
    ids = {row["id"] for split in _rows(version).values() for row in split}
    assert {f"case-{case.pk}", f"case-{case.pk}-ex2", f"case-{case.pk}-ex3", f"case-{case.pk}-ex4"} <= ids
    assert version.manifest["curation"]["filters"]["near_duplicate"]["dropped"] == 0


def test_progress_is_reported_stage_by_stage() -> None:
    rows = [{"id": f"case-{i}", "case_id": i, "scenario": "s", "language": "en", "weight": 1.0,
             "prompt": f"Question {i}: name a colour that starts with letter {chr(65 + i % 26)}.",
             "response": f"A colour starting with {chr(65 + i % 26)} is easy to find for case number {i}."}
            for i in range(1200)]
    seen: list[tuple[str, int, int]] = []
    curate(rows=rows, eval_items=[EvalItem("general", "g1", "What is 2 + 2?", "4")],
           progress=lambda stage, done, total: seen.append((stage, done, total)))
    stages = list(dict.fromkeys(stage for stage, _, _ in seen))
    assert stages == ["quality", "personal data", "near-duplicates", "decontamination"]
    assert ("quality", 500, 1200) in seen and ("quality", 1200, 1200) in seen
    assert all(done <= total for _, done, total in seen)


def test_triage_shows_likely_duplicates_and_marks_one_in_a_click(
    contributor: User, other_contributor: User, maintainer: User, client_for
) -> None:
    original = _case(contributor, maintainer, POLITE.format(n=1), POLITE_ANSWER.format(n=1), "礼貌改写")
    data = CaseInput(scenario="改写", prompt=POLITE.format(n=2), expected_output=POLITE_ANSWER.format(n=2),
                     language="zh", license_consent=True)
    copy = case_create(author=other_contributor, data=data)
    other = case_create(author=other_contributor, data=CaseInput(
        scenario="改写", prompt="把这句话改成被动语态：猫抓住了老鼠。", expected_output="老鼠被猫抓住了。",
        language="zh", license_consent=True))
    browser = client_for(maintainer)
    triage = browser.get(reverse("intake:triage")).content.decode()
    row_of = {pk: triage.split(f'value="{pk}"')[1].split("</tr>")[0] for pk in (copy.pk, other.pk)}
    mark = reverse("intake:triage_mark_duplicate", args=[copy.pk, original.pk])
    assert "likely duplicate of" in row_of[copy.pk] and mark in row_of[copy.pk]
    assert "likely duplicate of" not in row_of[other.pk]
    detail = browser.get(reverse("intake:case_detail", args=[copy.pk])).content.decode()
    assert 'id="likely-duplicates"' in detail and mark in detail
    assert client_for(contributor).post(mark).status_code == 403
    assert browser.post(mark, {"query": "status=new"}).url == reverse("intake:triage") + "?status=new"
    copy.refresh_from_db()
    assert copy.status == CaseStatus.DUPLICATE and copy.duplicate_of_id == original.pk
    # An edit gives the case a new signature and new bands: now it is a copy of the original too.
    assert cases_likely_duplicates(cases=[other])[other.pk] == []
    case_update_from_source(case=other, data=data)
    other.refresh_from_db()
    assert [hit.case.pk for hit in cases_likely_duplicates(cases=[other])[other.pk]] == [original.pk]


def test_benchmarks_register_with_clear_errors_and_nothing_half_stored(
    maintainer: User, contributor: User, client_for, tmp_path: Path
) -> None:
    good = "\n".join(json.dumps(b, ensure_ascii=False) for b in BENCHMARK).encode()
    bad = good + b'\n{"id": "gsm-3", "prompt": "ok"}\n{not json}\n{"id": "gsm-1", "prompt": "again"}\n{"answer": 1}\n'
    browser = client_for(maintainer)
    page = browser.post(reverse("curation:benchmark_list"),
                        {"name": "mini", "file": io.BytesIO(bad)}, follow=True).content.decode()
    assert "line 4: not JSON" in page and "line 5: duplicate id" in page and "line 6: no prompt" in page
    assert not BenchmarkSet.objects.exists() and not BenchmarkItem.objects.exists()
    upload = io.BytesIO(good)
    upload.name = "mini.jsonl"
    assert client_for(contributor).post(reverse("curation:benchmark_list"),
                                        {"name": "mini", "file": upload}).status_code == 403
    upload.seek(0)
    browser.post(reverse("curation:benchmark_list"), {"name": "mini", "file": upload})
    benchmark = BenchmarkSet.objects.get()
    assert benchmark.item_count == 2 and benchmark.created_by == maintainer
    assert BenchmarkItem.objects.get(item_id="gsm-2").answer == "70"  # a numeric answer, as GSM8K has them
    assert benchmark_register(name="mini", data=good, by=maintainer) == benchmark  # the same file: a no-op
    with pytest.raises(ValidationError, match="already registered with other content"):
        benchmark_register(name="mini", data=good + b"\n" + good[:10], by=maintainer)
    with pytest.raises(PermissionDenied):
        benchmark_register(name="other", data=good, by=contributor)
    path = tmp_path / "bench.jsonl"
    path.write_bytes(good)
    out = io.StringIO()
    call_command("register_benchmark", "from-shell", str(path), stdout=out)
    assert "from-shell: 2 items" in out.getvalue() and BenchmarkSet.objects.count() == 2
    path.write_bytes(b"\xff\xfe")
    with pytest.raises(Exception, match="not UTF-8"):
        call_command("register_benchmark", "broken", str(path))
    assert BenchmarkSet.objects.count() == 2


def test_a_withdrawn_case_leaves_later_versions_and_releases_say_where_it_still_is(
    contributor: User, maintainer: User, client_for
) -> None:
    cases = accepted_cases(author=contributor, maintainer=maintainer, count=4)
    batch = batch_approve(batch=batch_create(by=maintainer, name="plan-one"), by=maintainer)
    # Withdrawn after approval, before the build: the build leaves it out and says so.
    gone = case_transition(case=cases[0], to_status=CaseStatus.WITHDRAWN, actor=contributor, note="no longer ok")
    version = dataset_version_build(version_id=DatasetVersion.objects.get(batch=batch).pk)
    assert gone.pk not in {row["case_id"] for split in _rows(version).values() for row in split}
    assert version.manifest["withdrawn_cases"] == [gone.pk]

    run = finished_run(version=version, maintainer=maintainer)
    write_export(run)
    release = release_publish(run=run, by=maintainer, tag="yuan2-tiny-curation")
    page = Client().get(reverse("releases:detail", args=[release.tag])).content.decode()
    assert f"#{gone.pk}:" not in page and f"#{cases[1].pk}</a>" in page  # never in this release's data
    # Withdrawn after the release: the release still contains it and says so, publicly without its text.
    later = FeedbackCase.objects.get(pk=cases[1].pk)
    assert later.status == CaseStatus.RELEASED
    case_transition(case=later, to_status=CaseStatus.WITHDRAWN, actor=contributor, note="remove please")
    page = Client().get(reverse("releases:detail", args=[release.tag])).content.decode()
    assert f"#{later.pk}: withdrawn by its author after this release was trained; this release still contains it" \
        in page and later.scenario not in page.split('id="cases"')[1].split("</ul>")[0].split(f"#{cases[2].pk}")[0]
    mine = client_for(contributor).get(reverse("intake:case_detail", args=[later.pk])).content.decode()
    assert "Withdrawn; still contained in" in mine and release.tag in mine
    # ...and no later dataset version takes it: it is no longer accepted, so no batch collects it.
    accepted_cases(author=contributor, maintainer=maintainer, count=2)
    with pytest.raises(ValidationError):
        case_transition(case=later, to_status=CaseStatus.ACCEPTED, actor=maintainer)
    assert later.pk not in set(batch_create(by=maintainer, name="plan-two").items.values_list("case_id", flat=True))


def test_a_build_writes_its_progress_with_its_heartbeat(
    curated_batch: dict[str, FeedbackCase], maintainer: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the batch page's progress bar reads: the row's `progress`, stage by stage, while it builds."""
    from curation.services import dataset_versions

    seen: list[dict] = []
    real = dataset_versions.Heartbeat.__call__

    def beat(self, force: bool = False, **fields: object) -> None:
        real(self, force, **fields)
        seen.append(DatasetVersion.objects.get(pk=self.pk).progress)  # as stored, not as sent

    monkeypatch.setattr(dataset_versions, "PROGRESS_SECONDS", 0.0)
    monkeypatch.setattr(dataset_versions.Heartbeat, "__call__", beat)
    version = _build(maintainer, "plan-progress")
    stages = list(dict.fromkeys(p["stage"] for p in seen))
    assert stages == ["quality", "personal data", "near-duplicates", "decontamination", "writing"]
    rows = len(curated_batch) + 8  # one row per case: none of them has extra examples
    assert {"stage": "quality", "done": rows, "total": rows} in seen
    assert version.progress == {"stage": "ready", "done": 1, "total": 1}
