"""docker-compose.yml, the Dockerfile and the Celery app (no Docker engine here: parse and check)."""

import fnmatch
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

from .conftest import REPO_ROOT, run_manage

COMPOSE = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())


def test_compose_has_the_services_with_their_commands() -> None:
    services = COMPOSE["services"]
    assert {"web", "worker", "gpu-worker", "beat", "postgres", "redis"} <= set(services)
    assert services["web"]["command"][0] == "gunicorn" and "cotrain_site.wsgi:application" in services["web"]["command"]
    assert services["worker"]["command"][services["worker"]["command"].index("-Q") + 1] == "default"
    gpu = services["gpu-worker"]
    assert gpu["command"][gpu["command"].index("-Q") + 1] == "gpu"
    assert gpu["runtime"] == "nvidia"
    assert "beat" in services["beat"]["command"]
    assert "artifacts" in COMPOSE["volumes"]
    for name in ("web", "worker", "gpu-worker", "beat"):
        assert "artifacts:/data/artifacts" in services[name]["volumes"]
        assert services[name]["build"]["dockerfile"] == "Dockerfile"


def test_files_the_compose_and_dockerfile_reference_exist() -> None:
    assert (REPO_ROOT / "Dockerfile").exists()
    for name in ("web", "worker", "gpu-worker", "beat", "migrate"):
        command = COMPOSE["services"][name]["command"]
        if "--chdir" in command:
            module = command[-1].split(":")[0]
            assert (REPO_ROOT / command[command.index("--chdir") + 1] / (module.replace(".", "/") + ".py")).exists()
        if "-A" in command:
            assert (REPO_ROOT / (command[command.index("-A") + 1].replace(".", "/") + ".py")).exists()
        if "manage.py" in command:
            assert (REPO_ROOT / "manage.py").exists()
    for line in (REPO_ROOT / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY"):
            for source in line.split()[1:-1]:
                if "*" not in source:
                    assert (REPO_ROOT / source).exists(), source


def test_celery_app_queues_routing_and_default_broker(tmp_path: Path) -> None:
    # What a worker does at start: import the apps' tasks (autodiscovery), then route each registered name.
    code = (
        "import json, sys; sys.path.insert(0, '.'); from worker.celery_app import GPU_TASK_PATTERNS, app; "
        "app.loader.import_default_modules(); "
        "names = sorted(n for n in app.tasks if not n.startswith('celery.')); "
        "print(json.dumps({'broker': app.conf.broker_url, 'queues': sorted(q.name for q in app.conf.task_queues), "
        "'patterns': GPU_TASK_PATTERNS, 'beat': [e['task'] for e in app.conf.beat_schedule.values()], "
        "'routes': {n: app.amqp.router.route({}, n, args=(), kwargs={})['queue'].name for n in names}}))"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_", "REDIS_", "CELERY_"))}
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        env={**env, "COTRAIN_VAR_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    app = json.loads(result.stdout)
    assert app["broker"] == "filesystem://localhost/" and app["queues"] == ["default", "gpu"]
    routes = app["routes"]  # registered task name -> queue: a name that is not a real task is not in it
    # The trainer's tasks go to the GPU hosts, and only they do; the rest (a dataset build, ...) to `default`.
    assert {name for name, queue in routes.items() if queue == "gpu"} == {
        "training.tasks.train_run",
        "training.tasks.evaluate_run",
    }
    assert routes["curation.tasks.build_dataset_version"] == routes["releases.tasks.publish_release"] == "default"
    # Each GPU route pattern names registered tasks, and the beat schedule sends only registered ones.
    assert all(fnmatch.filter(routes, pattern) for pattern in app["patterns"]), app["patterns"]
    assert app["beat"] and set(app["beat"]) <= set(routes), set(app["beat"]) - set(routes)
    assert (tmp_path / "celery-broker").is_dir()
    with_redis = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        env={**env, "REDIS_URL": "redis://127.0.0.1:6379/3", "COTRAIN_VAR_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert json.loads(with_redis.stdout)["broker"] == "redis://127.0.0.1:6379/3", with_redis.stderr


def test_platform_apps_import_neither_torch_nor_trainer() -> None:
    # Of the trainer, only its torch-free run folder names (test_boundaries.py holds the rule).
    trainer = r"trainer(?!\.contract\b|\s+import\s+contract$)"
    pattern = re.compile(rf"^\s*(?:import|from)\s+(torch|{trainer}|transformers|peft)\b", re.MULTILINE)
    offenders = [
        str(p) for p in (REPO_ROOT / "platform").rglob("*.py") if pattern.search(p.read_text(encoding="utf-8"))
    ]
    assert offenders == []


def test_web_server_does_not_import_torch() -> None:
    result = run_manage(
        "shell",
        "--no-imports",
        "-c",
        "import sys, django.urls as u; u.resolve('/'); from cotrain_site import urls; print('torch' in sys.modules)",
    )
    assert result.stdout.strip() == "False", result.stderr
