"""export_cases / import_cases: the JSON-lines format, idempotent import, bad lines by number."""

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from accounts.models import User
from intake.models import CaseStatus, FeedbackCase
from intake.services import case_transition

pytestmark = pytest.mark.django_db
SAMPLES = Path(__file__).resolve().parents[2] / "platform" / "intake" / "fixtures" / "sample_cases.jsonl"
REQUIRED = {"id", "source", "source_url", "status", "scenario", "prompt", "bad_output", "expected_output", "language"}
REQUIRED |= {"author", "created_at"}


def test_export_writes_one_json_line_per_case(make_case: Callable, maintainer: User, tmp_path: Path) -> None:
    first, second = make_case(), make_case(scenario="SQL生成")
    case_transition(case=second, to_status=CaseStatus.REJECTED, actor=maintainer, note="重复")
    out = tmp_path / "cases.jsonl"
    call_command("export_cases", "--output", str(out))
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [row["id"] for row in rows] == [first.pk, second.pk]
    assert set(rows[0]) >= REQUIRED
    assert (rows[1]["status"], rows[1]["status_reason"], rows[1]["author"]) == ("rejected", "重复", "li_ming")


def test_export_then_import_elsewhere_round_trips_and_twice_changes_nothing(
    make_case: Callable, tmp_path: Path
) -> None:
    original = make_case()
    out = tmp_path / "cases.jsonl"
    call_command("export_cases", "--output", str(out))
    FeedbackCase.objects.all().delete()
    call_command("import_cases", str(out))
    imported = FeedbackCase.objects.get()
    assert (imported.uid, imported.prompt, imported.author.username) == (original.uid, original.prompt, "li_ming")
    assert imported.created_at == original.created_at
    call_command("import_cases", str(out))
    assert FeedbackCase.objects.count() == 1


def test_bundled_samples_import_idempotently() -> None:
    call_command("import_cases", str(SAMPLES))
    assert FeedbackCase.objects.count() == 54
    assert set(FeedbackCase.objects.values_list("language", flat=True)) == {"zh", "en", "mixed"}
    call_command("import_cases", str(SAMPLES))
    assert FeedbackCase.objects.count() == 54


def test_bad_lines_are_reported_by_number_and_nothing_is_imported(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    good = json.loads(SAMPLES.read_text(encoding="utf-8").splitlines()[0])
    lines = [
        json.dumps(good, ensure_ascii=False),
        "{broken json",
        json.dumps({**good, "uid": "", "expected_output": ""}, ensure_ascii=False),
        "",
        json.dumps({**good, "uid": "", "status": "approved"}),
        json.dumps({**good, "uid": "", "prompt": 42}),
        json.dumps({**good, "uid": "", "prompt": "bell\x07"}),
    ]
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines), encoding="utf-8")
    with pytest.raises(CommandError, match="5 bad line"):
        call_command("import_cases", str(path))
    err = capsys.readouterr().err
    for number, text in (
        (2, "not valid JSON"),
        (3, "expected_output"),
        (5, "status"),
        (6, "must be a string"),
        (7, "control character"),
    ):
        assert f"line {number}:" in err and text in err.split(f"line {number}:")[1].splitlines()[0]
    assert "line 1:" not in err
    assert FeedbackCase.objects.count() == 0


def test_extra_examples_survive_export_and_import_and_bad_ones_are_reported(
    make_case: Callable, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    original = make_case()
    FeedbackCase.objects.filter(pk=original.pk).update(
        extra_examples=[{"input": "2024年1月15日", "output": "2024-01-15"}])
    out = tmp_path / "cases.jsonl"
    call_command("export_cases", "--output", str(out))
    record = json.loads(out.read_text(encoding="utf-8").splitlines()[0])
    assert record["extra_examples"] == [{"input": "2024年1月15日", "output": "2024-01-15"}]
    FeedbackCase.objects.all().delete()
    call_command("import_cases", str(out))
    assert FeedbackCase.objects.get().extra_examples == record["extra_examples"]

    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join([
        json.dumps({**record, "uid": "", "extra_examples": [{"input": "x"}]}, ensure_ascii=False),
        json.dumps({**record, "uid": "", "extra_examples": [{"input": "x", "output": ""}]}, ensure_ascii=False),
    ]), encoding="utf-8")
    with pytest.raises(CommandError, match="2 bad line"):
        call_command("import_cases", str(bad))
    err = capsys.readouterr().err
    assert "line 1" in err and "extra_examples" in err and "line 2" in err
    assert FeedbackCase.objects.count() == 1
