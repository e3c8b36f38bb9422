"""docker-compose.yml, checked without Docker: every command runs something that exists here, every variable it
passes is one the settings read, and start order follows health checks."""

from __future__ import annotations

import importlib.util
import os
import re

import yaml

from tests.support.env import ROOT
from workers.settings import Settings

APP_SERVICES = {"migrate", "api", "worker", "worker-ai", "beat", "flower"}
IMAGE_ENV = {"POSTGRES_PASSWORD", "POSTGRES_DB"}


def _compose() -> dict:
    with open(os.path.join(ROOT, "docker-compose.yml")) as fh:
        return yaml.safe_load(fh)


def _module_exists(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def test_the_services_of_the_design_are_all_there_with_health_checks() -> None:
    services = _compose()["services"]
    assert set(services) == APP_SERVICES | {"postgres", "redis"}
    for name in ("postgres", "redis", "api", "worker", "worker-ai", "flower"):
        assert "healthcheck" in services[name], name
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("api", "worker", "worker-ai", "beat"):
        depends = services[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully", name
        assert depends["redis"]["condition"] == "service_healthy", name


def test_every_command_names_a_module_or_entry_point_that_exists() -> None:
    for name in APP_SERVICES:
        command = _compose()["services"][name]["command"]
        assert command[:2] == ["python", "-m"], name
        module = command[2]
        assert _module_exists(module), f"{name}: no module {module}"
        if module == "celery":
            assert command[3:5] == ["-A", "workers.app"] and _module_exists("workers.app")
            assert command[5] in {"worker", "beat", "flower"}
        if module == "uvicorn":
            target_module, attr = command[3].split(":")
            assert hasattr(importlib.import_module(target_module), attr)
        if module == "workers":
            from workers.cli import build_parser

            build_parser().parse_args(command[3:])
    worker_queues = _compose()["services"]["worker"]["command"]
    assert worker_queues[worker_queues.index("-Q") + 1] == "billing,analytics,default"
    ai = _compose()["services"]["worker-ai"]["command"]
    assert ai[ai.index("-Q") + 1] == "ai" and ai[ai.index("-P") + 1] == "threads"


def test_every_variable_passed_is_one_the_settings_read() -> None:
    known = {field.upper() for field in Settings.model_fields}
    for name, service in _compose()["services"].items():
        for variable in service.get("environment", {}) or {}:
            assert variable in known or (name == "postgres" and variable in IMAGE_ENV), f"{name}: {variable}"


def test_the_dockerfile_installs_the_project_and_copies_every_package() -> None:
    with open(os.path.join(ROOT, "Dockerfile")) as fh:
        dockerfile = fh.read()
    copied = set(re.findall(r"^COPY (\S+)/ ", dockerfile, flags=re.M))
    assert {"workers", "tasks", "models", "api"} <= copied
    assert "celeryconfig.py" in dockerfile and "beat_schedule.py" in dockerfile and "alembic.ini" in dockerfile


def test_flower_is_not_published_beyond_localhost() -> None:
    flower = _compose()["services"]["flower"]
    assert all(str(port).startswith("127.0.0.1:") for port in flower["ports"])
    assert any("--basic-auth" in part for part in flower["command"])
