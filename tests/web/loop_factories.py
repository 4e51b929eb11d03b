"""Objects of the training loop for tests: accepted cases, approved batches, built datasets, finished runs.

They go through the services (never `.save()` of a status), so tests start from
states the platform can really reach.
"""

from pathlib import Path

from django.conf import settings

from accounts.models import User
from curation.models import DatasetBatch, DatasetVersion
from curation.services import batch_approve, batch_create, dataset_version_build
from intake.models import CaseStatus, FeedbackCase
from intake.services import CaseInput, case_create, case_transition
from training.models import Evaluation, EvaluationStatus, RunMethod, RunStatus, TrainingRun
from training.services import evaluation_transition, run_transition

# Real requests in the co-training plan's style: several scenarios, Chinese and English.
CASES = [
    CaseInput(
        scenario="小学数学应用题",
        prompt="小明有3个苹果，又买了5个，送给同学2个，还剩几个？",
        bad_output="小明还剩10个苹果。",
        expected_output="3 + 5 = 8，8 − 2 = 6。小明还剩6个苹果。",
        language="zh",
        license_consent=True,
    ),
    CaseInput(
        scenario="小学数学应用题",
        prompt="一个水池有两个进水管，甲管单独注满需要6小时，乙管单独注满需要3小时。两管同时打开，几小时能注满水池？",
        bad_output="两管同时打开需要9小时注满水池。",
        expected_output="甲管每小时注满1/6，乙管每小时注满1/3，合起来每小时注满1/2。所以需要2小时。",
        language="zh",
        license_consent=True,
    ),
    CaseInput(
        scenario="小学数学应用题",
        prompt="商店里一支钢笔12元，一本笔记本比钢笔便宜4.5元。买2支钢笔和3本笔记本一共要多少钱？",
        bad_output="一共要57.5元。",
        expected_output="笔记本7.5元。2 × 12 + 3 × 7.5 = 24 + 22.5 = 46.5元。",
        language="zh",
        license_consent=True,
    ),
    CaseInput(
        scenario="SQL生成",
        prompt="表 orders(id, user_id, amount, created_at)。写SQL：统计2023年每个用户的订单总金额，按金额从高到低排。",
        bad_output="SELECT user_id, amount FROM orders ORDER BY amount;",
        expected_output=(
            "SELECT user_id, SUM(amount) AS total FROM orders\n"
            "WHERE created_at >= '2023-01-01' AND created_at < '2024-01-01'\n"
            "GROUP BY user_id ORDER BY total DESC;"
        ),
        language="zh",
        license_consent=True,
    ),
    CaseInput(
        scenario="SQL生成",
        prompt="表 users(id, name, city)。写SQL：找出用户数最多的城市。",
        bad_output="SELECT city FROM users;",
        expected_output="SELECT city, COUNT(*) AS n FROM users GROUP BY city ORDER BY n DESC LIMIT 1;",
        language="zh",
        license_consent=True,
    ),
    CaseInput(
        scenario="Python code generation",
        prompt="Write a Python function that returns the n-th Fibonacci number iteratively.",
        bad_output="def fib(n): return fib(n-1) + fib(n-2)",
        expected_output=(
            "def fib(n: int) -> int:\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a"
        ),
        language="en",
        license_consent=True,
    ),
    CaseInput(
        scenario="Python code generation",
        prompt="Write a Python one-liner that removes duplicates from a list while keeping order.",
        bad_output="list(set(items))",
        expected_output="list(dict.fromkeys(items))",
        language="en",
        license_consent=True,
    ),
    CaseInput(
        scenario="文本摘要",
        prompt="用一句话概括：源2.0是浪潮信息发布的开源大模型，包括1026亿、518亿和21亿三种参数规模。",
        bad_output="源2.0是一个模型。",
        expected_output="源2.0是浪潮信息开源的大模型，有1026亿、518亿和21亿参数三个版本。",
        language="zh",
        license_consent=True,
    ),
]


def accepted_cases(*, author: User, maintainer: User, count: int = len(CASES)) -> list[FeedbackCase]:
    cases = []
    for data in CASES[:count]:
        case = case_create(author=author, data=data)
        cases.append(case_transition(case=case, to_status=CaseStatus.ACCEPTED, actor=maintainer))
    return cases


def approved_batch(*, author: User, maintainer: User, name: str = "plan-test") -> DatasetBatch:
    accepted_cases(author=author, maintainer=maintainer)
    batch = batch_create(by=maintainer, name=name)
    return batch_approve(batch=batch, by=maintainer)


def built_version(*, author: User, maintainer: User, name: str = "plan-test") -> DatasetVersion:
    """An approved batch's dataset, built synchronously (the task body) under settings.ARTIFACT_ROOT."""
    batch = approved_batch(author=author, maintainer=maintainer, name=name)
    return dataset_version_build(version_id=DatasetVersion.objects.get(batch=batch).pk)


def finished_run(*, version: DatasetVersion, maintainer: User, evaluation: str | None = "passed") -> TrainingRun:
    """A succeeded LoRA run on `version` whose evaluation ended as `evaluation` (None: no evaluation).

    The run folder is `runs/test-<id>` under ARTIFACT_ROOT; the caller writes its export.
    """
    run = TrainingRun.objects.create(
        dataset_version=version,
        base_checkpoint="demo",
        method=RunMethod.LORA,
        recipe={"method": "lora", "lora_rank": 8, "lr": 0.0002, "max_steps": 40},
        created_by=maintainer,
    )
    run.run_dir = f"runs/test-{run.pk}"
    run.save(update_fields=["run_dir"])
    run_transition(run=run, to_status=RunStatus.RUNNING)
    run = run_transition(run=run, to_status=RunStatus.SUCCEEDED)
    if evaluation is not None:
        record = Evaluation.objects.create(
            run=run,
            base_metrics={"cases": {"chrf": 21.5, "exact_match": 0.0, "loss": 2.91}, "general": {"chrf": 40.2}},
            tuned_metrics={"cases": {"chrf": 63.0, "exact_match": 0.375, "loss": 0.84}, "general": {"chrf": 39.9}},
            verdict="Requested cases improved: chrF 21.50 -> 63.00.",
        )
        evaluation_transition(evaluation=record, to_status=EvaluationStatus.RUNNING)
        evaluation_transition(evaluation=record, to_status=evaluation)
    return run


def write_export(run: TrainingRun, *, adapter: bool = True) -> Path:
    """What the trainer's export step leaves: a real tiny merged checkpoint (and an adapter), each with SHA256SUMS."""
    # Imported here: only release tests need torch.
    import torch
    from trainer.checkpoint import save_model, write_sha256sums
    from trainer.config import preset
    from trainer.model import YuanForCausalLM

    export = Path(settings.ARTIFACT_ROOT) / run.run_dir / "export"
    torch.manual_seed(0)
    save_model(YuanForCausalLM(preset("yuan2_tiny")), export / "merged")
    (export / "merged" / "tokenizer_config.json").write_text('{"tokenizer": "byte"}', encoding="utf-8")
    write_sha256sums(export / "merged")
    if adapter:
        (export / "adapter").mkdir()
        (export / "adapter" / "adapter_config.json").write_text('{"r": 8, "peft_type": "LORA"}', encoding="utf-8")
        (export / "adapter" / "adapter_model.safetensors").write_bytes(bytes(range(256)) * 64)
        write_sha256sums(export / "adapter")
    return export
