"""The shipped issue form: rendered the way GitHub renders a filled-in form, each field lands in its case field."""

from pathlib import Path

import yaml

from ghsync.parsing import parse_request
from ghsync.services.items import case_input_for

TEMPLATE = Path(__file__).resolve().parents[2] / ".github" / "ISSUE_TEMPLATE" / "co-training.yml"
ANSWERS = {
    "scenario": "法律文书摘要",
    "prompt": "原告张某诉被告李某民间借贷纠纷一案，本院于2023年5月立案……",
    "bad_output": "这是一份判决书。",
    "expected_output": "被告李某应于判决生效后十日内归还原告借款本金5万元及利息。",
    "more_examples": "输入：……驳回原告诉讼请求。\n输出：法院驳回了原告的全部诉讼请求。",
    "language": "中文 Chinese",
    "model_version": "Yuan2-51B-hf",
}


def render(answers: dict[str, str], *, consent: bool = True) -> str:
    """An issue body as GitHub writes it: `### label`, a blank line, the answer (or `_No response_`)."""
    sections = []
    for item in yaml.safe_load(TEMPLATE.read_text(encoding="utf-8"))["body"]:
        if item["type"] == "markdown":
            continue
        label = item["attributes"]["label"]
        if item["type"] == "checkboxes":
            boxes = [f"- [{'X' if consent else ' '}] {option['label']}" for option in item["attributes"]["options"]]
            sections.append(f"### {label}\n\n" + "\n".join(boxes))
        else:
            sections.append(f"### {label}\n\n{answers.get(item['id']) or '_No response_'}")
    return "\n\n".join(sections)


def test_template_fields_map_one_to_one_onto_case_fields() -> None:
    template = yaml.safe_load(TEMPLATE.read_text(encoding="utf-8"))
    assert template["labels"] == ["co-training"]
    ids = [item["id"] for item in template["body"] if "id" in item]
    assert ids == ["scenario", "prompt", "bad_output", "expected_output", "more_examples", "language",
                   "model_version", "license_consent"]  # fmt: skip
    parsed = parse_request(render(ANSWERS))
    data, complete = case_input_for(
        parsed=parsed, body="", title="[共训需求] 法律文书摘要", consent=bool(parsed.consent)
    )
    assert complete and parsed.is_form
    for field in ("scenario", "prompt", "bad_output", "expected_output", "model_version"):
        assert getattr(data, field) == ANSWERS[field], field
    assert (data.language, data.license_consent) == ("zh", True)
    assert len(parsed.examples) == 2 and parsed.examples[1].output == "法院驳回了原告的全部诉讼请求。"


def test_optional_fields_left_empty_and_consent_unchecked() -> None:
    answers = {**ANSWERS, "bad_output": "", "more_examples": "", "model_version": "", "language": "English"}
    parsed = parse_request(render(answers, consent=False))
    assert parsed.consent is False
    assert parsed.examples[0].bad_output == "" and len(parsed.examples) == 1
    assert (parsed.model_version, parsed.language) == ("", "en")
