"""10,000 cases through every curation filter, against the build's old path (scrub and split only).

    .venv/bin/python bench/curation_speed.py [--cases N] [--benchmark-items M] [--django] [--out FILE]

The cases are the hand-written requests of the test fixtures (the near-duplicate, quality
and decontamination sets; each once), then made-up requests of random text in the fixtures'
own characters and words (distinct, as a month's intake is, of real length and script mix:
20-400 characters, mostly Chinese), numbers redrawn; 1 to 3 example pairs a case. Mixed in, as a month's intake has
them: 10% copies of another request with other numbers, 8% personal data, 2% placeholder
answers, 1% pasted benchmark items. The evaluation data is the general regression set, the
shipped benchmark sample and M synthetic benchmark items. Both paths run in this process on
the same rows; `curate` reports each stage, timed here. With --django, the same cases are
imported into an embedded instance (SQLite) and one dataset version is built through the
service, as a worker builds it (reading the batch, curation, `save_to_disk`, hashes, card).
One process, this CPU.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import random
import re
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "platform"), str(ROOT)]
FIXTURES = ROOT / "tests" / "web" / "fixtures"

from curation.pipeline import EvalItem, curate, split_groups  # noqa: E402
from intake.pii import scrub  # noqa: E402


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _pool() -> list[tuple[str, str, str]]:
    """(prompt, response, language) of real-looking requests from the fixtures."""
    pool = []
    for row in _jsonl(FIXTURES / "quality_eval.jsonl"):
        if not row["expect"]:
            pool.append((row["prompt"], row["response"], row["language"]))
    for row in _jsonl(FIXTURES / "decontam_eval.jsonl"):
        if not row["contaminated"]:
            pool.append((row["prompt"], row["response"], "zh"))
    for row in _jsonl(FIXTURES / "neardup_eval.jsonl"):
        pool.append((row["a"], "好的，下面按你的要求给出回答：" + row["b"][:80], row.get("lang", "zh")))
    return pool


def _alphabet() -> tuple[list[str], list[str]]:
    """The Han characters and English words of the fixtures, each as often as there (a frequency list)."""
    text = " ".join(json.dumps(row, ensure_ascii=False) for name in ("quality_eval", "neardup_eval", "decontam_eval")
                    for row in _jsonl(FIXTURES / f"{name}.jsonl"))
    return re.findall(r"[\u4e00-\u9fff]", text), re.findall(r"[A-Za-z]{2,}", text)


HAN, WORDS = _alphabet()


def _babble(rng: random.Random, language: str, low: int, high: int) -> str:
    """Random text of the fixtures' characters (or words) with punctuation every few units."""
    size = rng.randint(low, high)
    if language == "en":
        words = [rng.choice(WORDS) for _ in range(size // 5)]
        return " ".join(w + ("." if rng.random() < 0.1 else "") for w in words)
    chars = [rng.choice(HAN) + ("，" if rng.random() < 0.08 else "") for _ in range(size)]
    return "".join(chars) + "。"


def _renumber(text: str, rng: random.Random) -> str:
    return re.sub(r"\d+", lambda m: str(rng.randint(1, 10 ** min(len(m.group()), 6))), text)


PERSONAL = ["我的手机号是1{}，", "邮箱 user{}@example.com，", "身份证号11010519491231002X，", "call me at +86 13{} "]


def make_rows(n_cases: int, benchmark: list[dict], seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    pool = _pool()
    rng.shuffle(pool)
    rows: list[dict] = []
    bases: list[tuple[str, str, str]] = []
    for case_id in range(1, n_cases + 1):
        roll = rng.random()
        if roll < 0.10 and bases:
            prompt, response, language = rng.choice(bases)  # a copy of an earlier request, other numbers
        elif roll < 0.11:
            item = rng.choice(benchmark)
            prompt, response, language = "请帮我解答：" + item["prompt"], item["answer"], "zh"
        else:
            # The hand-written requests first, then made-up ones of the fixtures' own characters and words
            # drawn at random: distinct requests (as a month's intake is) of real length and script mix.
            if pool:
                prompt, response, language = pool.pop()  # each hand-written request once
            else:
                language = rng.choice(("zh", "zh", "zh", "en", "mixed"))
                prompt, response = _babble(rng, language, 20, 200), _babble(rng, language, 20, 400)
            bases.append((prompt, response, language))
        if rng.random() < 0.08:
            prompt = rng.choice(PERSONAL).format(rng.randint(3000000000, 9999999999)) + prompt
        if rng.random() < 0.02:
            response = rng.choice(["TODO", "暂无", "N/A", "同上"])
        for example in range(rng.choice((1, 1, 2, 3))):
            rows.append({
                "id": f"case-{case_id}" + (f"-ex{example + 1}" if example else ""), "case_id": case_id,
                "prompt": _renumber(prompt, rng), "response": _renumber(response, rng), "language": language,
                "scenario": f"scenario-{case_id % 40}", "weight": 1.0, "source": "web", "license": "CC-BY-4.0",
                "case_url": f"https://cotrain.example.org/cases/{case_id}/", "source_url": "",
            })
    return rows


def eval_items(n_synthetic: int, seed: int = 1) -> tuple[list[EvalItem], list[dict]]:
    rng = random.Random(seed)
    general = _jsonl(ROOT / "trainer" / "assets" / "general.jsonl")
    sample = _jsonl(FIXTURES / "benchmark_sample.jsonl")
    items = [EvalItem("general", row["id"], row["prompt"], row["response"]) for row in general]
    items += [EvalItem("benchmark:sample", row["id"], row["prompt"], row["answer"]) for row in sample]
    synthetic = []
    for i in range(n_synthetic):
        base = rng.choice(sample)
        synthetic.append({"id": f"syn-{i}", "prompt": f"{_renumber(base['prompt'], rng)}（变式{i}）",
                          "answer": _renumber(base["answer"], rng)})
    items += [EvalItem("benchmark:synthetic", row["id"], row["prompt"], row["answer"]) for row in synthetic]
    return items, sample + synthetic


def old_path(rows: list[dict]) -> int:
    """What a build did before curation: scrub every row, split by case."""
    scrubbed = []
    for row in rows:
        clean = dict(row)
        clean["prompt"], _ = scrub(row["prompt"])
        clean["response"], _ = scrub(row["response"])
        scrubbed.append(clean)
    groups: dict[int, list[dict]] = defaultdict(list)
    for row in scrubbed:
        groups[row["case_id"]].append(row)
    splits = split_groups(groups=list(groups.values()))
    return sum(len(split) for split in splits.values())


def django_build(rows: list[dict], benchmark: list[dict]) -> dict:
    """The same cases as accepted requests in an embedded instance (SQLite in a temporary folder): one
    dataset build timed end to end, from reading the batch to the installed dataset folder."""
    import tempfile
    import uuid

    var = Path(tempfile.mkdtemp(prefix="cotrain-bench-"))
    os.environ.update({"COTRAIN_VAR_DIR": str(var), "DATABASE_URL": f"sqlite:///{var / 'bench.sqlite3'}",
                       "DJANGO_SETTINGS_MODULE": "cotrain_site.settings.dev"})
    import django

    django.setup()
    from accounts.services import user_create, user_make_maintainer
    from curation.models import DatasetVersion
    from curation.services import batch_approve, batch_create, dataset_version_build
    from curation.services.benchmarks import benchmark_register
    from django.core.management import call_command
    from django.utils import timezone
    from intake.services import CaseImport, CaseInput, cases_import_many

    call_command("migrate", verbosity=0)
    maintainer = user_make_maintainer(user=user_create(username="bench", password="correct-horse-battery-9"))
    by_case: dict[int, list[dict]] = defaultdict(list)
    for row in rows:
        by_case[row["case_id"]].append(row)
    records = [CaseImport(
        uid=str(uuid.uuid4()), source="web", source_url="", external_id="", status="accepted", status_reason="",
        author_name="bench", created_at=timezone.now(),
        data=CaseInput(scenario=case_rows[0]["scenario"], prompt=case_rows[0]["prompt"],
                       expected_output=case_rows[0]["response"], language=case_rows[0]["language"],
                       license_consent=True,
                       extra_examples=tuple((r["prompt"], r["response"]) for r in case_rows[1:])),
    ) for case_rows in by_case.values()]
    start = time.perf_counter()
    for i in range(0, len(records), 500):
        cases_import_many(records=records[i:i + 500])
    import_s = time.perf_counter() - start
    benchmark_register(name="synthetic", by=maintainer,
                       data="\n".join(json.dumps(item, ensure_ascii=False) for item in benchmark).encode())
    batch = batch_approve(batch=batch_create(by=maintainer, name="bench"), by=maintainer)
    start = time.perf_counter()
    version = dataset_version_build(version_id=DatasetVersion.objects.get(batch=batch).pk)
    build_s = time.perf_counter() - start
    assert version.status == "ready", version.error
    return {"import_s": round(import_s, 2), "build_s": round(build_s, 2), "cases": len(records),
            "train_rows": version.train_rows, "eval_rows": version.eval_rows, "database": "SQLite (embedded)"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", type=int, default=10_000)
    parser.add_argument("--benchmark-items", type=int, default=5_000)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--django", action="store_true",
                        help="also import the cases into an embedded instance and time one dataset build there")
    args = parser.parse_args()

    items, benchmark = eval_items(args.benchmark_items)
    rows = make_rows(args.cases, benchmark)
    print(f"{args.cases} cases, {len(rows)} rows, {len(items)} evaluation items")

    start = time.perf_counter()
    kept_old = old_path(rows)
    old_s = time.perf_counter() - start

    marks: dict[str, float] = {}
    start = time.perf_counter()

    def progress(stage: str, done: int, total: int) -> None:
        marks[stage] = time.perf_counter() - start  # the time the stage's last report came

    curated = curate(rows=rows, eval_items=items, progress=progress)
    new_s = time.perf_counter() - start
    stages, previous = {}, 0.0
    for stage, at in marks.items():
        stages[stage] = round(at - previous, 2)
        previous = at
    stages["split and the rest"] = round(new_s - previous, 2)
    summary = curated.summary()
    result = {
        "benchmark": "curation_speed",
        "date": datetime.date.today().isoformat(),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores (this CPU, one process)",
        "python": sys.version.split()[0],
        "cases": args.cases, "rows": len(rows), "eval_items": len(items),
        "baseline_old_build_path_s": round(old_s, 2), "baseline_rows_kept": kept_old,
        "curation_s": round(new_s, 2), "stages_s": stages,
        "rows_kept": {name: len(split) for name, split in curated.splits.items()},
        "dropped": {name: stats["dropped"] for name, stats in summary["filters"].items()},
        "changed": {name: stats["changed"] for name, stats in summary["filters"].items()},
        "flagged": {name: stats["flagged"] for name, stats in summary["filters"].items()},
        "near_duplicate_clusters": summary["near_duplicate_clusters"],
    }
    if args.django:
        result["django_build"] = django_build(rows, benchmark)
    print(json.dumps(result, ensure_ascii=False, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
