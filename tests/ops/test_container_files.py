"""The container and service files of the operations kit (docker/): the Dockerfile, the compose
stack and the systemd unit. No Docker engine or systemd manager runs here, so they are checked
structurally, against the Compose Specification's schema, with `systemd-analyze`, and against
tidegate's own configuration loader (every TIDEGATE_* variable they set must be accepted)."""

from __future__ import annotations

import configparser
import json
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from tests.conftest import missing_dependency
from tidegate.config import Config, load

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"
DOCKERFILE = DOCKER / "Dockerfile"
COMPOSE = DOCKER / "compose.yaml"
UNIT = DOCKER / "tidegate.service"

# Secrets the operator writes before `docker compose up`; never in the repository.
OPERATOR_SECRETS = {
    "alertmanager/secrets/slack_webhook_url",
    "alertmanager/secrets/pagerduty_routing_key",
}
REQUIRED_VARIABLES = {
    "POSTGRES_PASSWORD",
    "GRAFANA_ADMIN_PASSWORD",
    "MINIO_ROOT_PASSWORD",
    "TIDEGATE_S3_SECRET",
}


# ---- Dockerfile --------------------------------------------------------------------------


@dataclass
class Instruction:
    keyword: str
    arguments: str

    def exec_form(self) -> list[str]:
        """The JSON (exec) form's argv; fails on the shell form."""
        value = json.loads(self.arguments)
        assert isinstance(value, list), self
        return [str(v) for v in value]


@dataclass
class Stage:
    base: str
    name: str
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


def parse_dockerfile(text: str) -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the stages. Enough of the syntax for our file: comments, line
    continuations, and `FROM image [AS name]`; a hand-rolled parser because the Dockerfile
    parser on PyPI (dockerfile-parse) has had no release since 2023."""
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):  # comments inside a continuation are dropped
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    assert not pending, "the file ends inside a line continuation"
    arguments: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        keyword, _, rest = line.partition(" ")
        instruction = Instruction(keyword.upper(), rest.strip())
        if instruction.keyword == "FROM":
            words = instruction.arguments.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else ""
            stages.append(Stage(base=expand(words[0], arguments), name=name))
        elif not stages:
            assert instruction.keyword == "ARG", f"{line!r} before the first FROM"
            key, _, default = instruction.arguments.partition("=")
            arguments[key] = default
        else:
            stages[-1].instructions.append(instruction)
    return arguments, stages


def expand(word: str, arguments: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}", lambda m: arguments[m.group(1)], word)


def env_pairs(stage: Stage) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for instruction in stage.all("ENV"):
        for token in instruction.arguments.split():
            key, _, value = token.partition("=")
            pairs[key] = value
    return pairs


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse_dockerfile(DOCKERFILE.read_text())[1]


def test_dockerfile_builds_a_wheel_and_runs_it_elsewhere(stages: list[Stage]) -> None:
    builder, runtime = stages[0], stages[-1]
    assert len(stages) >= 2
    assert builder.name == "builder"
    assert {builder.base, runtime.base} == {"python:3.11-slim-bookworm"}
    assert any("maturin build --release" in i.arguments for i in builder.all("RUN"))
    # The runtime installs the builder's wheel and has no compiler or curl.
    installs = " ".join(i.arguments for i in runtime.all("RUN"))
    assert "from=builder" in installs
    assert re.search(r"pip install .*\.whl", installs)
    assert not re.search(r"\b(cargo|rustup|build-essential|curl)\b", installs)
    for copy in builder.all("COPY"):
        *sources, _destination = copy.arguments.split()
        for source in sources:
            assert (REPO / source).exists(), f"COPY {source}: not in the repository"


def test_dockerfile_runtime_is_unprivileged_and_observable(stages: list[Stage]) -> None:
    runtime = stages[-1]
    users = runtime.all("USER")
    assert users, "the runtime stage runs as root"
    user = users[-1].arguments.partition(":")[0]
    assert user not in {"root", "0"}
    assert {p for i in runtime.all("EXPOSE") for p in i.arguments.split()} == {"4317", "9464"}
    assert [i.arguments for i in runtime.all("VOLUME")] == ['["/var/lib/tidegate"]']
    assert runtime.all("ENTRYPOINT")[-1].exec_form() == ["tidegate", "serve"]
    (healthcheck,) = runtime.all("HEALTHCHECK")
    assert "/readyz" in healthcheck.arguments


def test_dockerfile_environment_is_valid_configuration(stages: list[Stage]) -> None:
    env = {k: v for k, v in env_pairs(stages[-1]).items() if k.startswith("TIDEGATE_")}
    config = load(environ=env)
    assert config.data_dir == "/var/lib/tidegate"
    assert config.grpc.listen == "0.0.0.0:4317"
    assert config.http.listen == "0.0.0.0:9464"


class ReadyzStub(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/readyz" else 404)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def readyz_stub() -> Iterator[HTTPServer]:
    server = HTTPServer(("127.0.0.1", 0), ReadyzStub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.mark.parametrize(("status", "healthy"), [(200, True), (503, False)])
def test_dockerfile_healthcheck_command_follows_readyz(
    stages: list[Stage], readyz_stub: HTTPServer, status: int, healthy: bool
) -> None:
    """The HEALTHCHECK's own command, run against a stand-in for /readyz."""
    arguments = stages[-1].all("HEALTHCHECK")[0].arguments
    argv = json.loads(arguments[arguments.index("CMD") + len("CMD") :])
    assert argv[0] == "python"
    ReadyzStub.status = status
    port = readyz_stub.server_address[1]
    result = subprocess.run(
        [sys.executable, *argv[1:]],
        env={"TIDEGATE_HTTP_LISTEN": f"0.0.0.0:{port}"},
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert (result.returncode == 0) is healthy, result.stderr


# ---- systemd unit ------------------------------------------------------------------------


def read_unit() -> configparser.ConfigParser:
    # strict=False: systemd allows a key to repeat (Environment=); the last one wins here.
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read_string(UNIT.read_text())
    return unit


HARDENING = {
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectKernelLogs": "yes",
    "ProtectControlGroups": "yes",
    "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
    "RestrictNamespaces": "yes",
    "LockPersonality": "yes",
    "MemoryDenyWriteExecute": "yes",
    "SystemCallArchitectures": "native",
    "CapabilityBoundingSet": "",
}


def test_unit_is_a_hardened_notify_service() -> None:
    service = read_unit()["Service"]
    assert service["Type"] == "notify"
    assert service["NotifyAccess"] == "main"
    assert service["WatchdogSec"] == "30"
    assert service["Restart"] == "on-failure"
    assert re.fullmatch(
        r"/\S+/tidegate serve --config /etc/tidegate/tidegate\.toml", service["ExecStart"]
    )
    assert service["User"] not in {"root", "0"} or service.get("DynamicUser") == "yes"
    assert service["StateDirectory"] == "tidegate"
    assert {key: service.get(key) for key in HARDENING} == HARDENING


def test_unit_outwaits_the_drain() -> None:
    service = read_unit()["Service"]
    defaults = Config()
    drain = defaults.shutdown_timeout_seconds + defaults.grpc.shutdown_grace_seconds
    assert float(service["TimeoutStopSec"]) > drain
    # SIGTERM to tidegate alone: it stops the embedded PostgreSQL itself after draining.
    assert service["KillMode"] == "mixed"


def test_unit_environment_is_valid_configuration() -> None:
    lines = re.findall(r"^Environment=(\S+?)=(\S*)$", UNIT.read_text(), flags=re.MULTILINE)
    env = {k: v for k, v in lines if k.startswith("TIDEGATE_")}
    assert load(environ=env).data_dir == "/var/lib/tidegate"


@pytest.fixture
def runnable_unit(tmp_path: Path) -> Path:
    """The unit with ExecStart on a binary that exists here, so `verify` checks the rest."""
    systemd_analyze = shutil.which("systemd-analyze")
    if systemd_analyze is None:
        missing_dependency("systemd-analyze not found (Debian: apt-get install systemd)")
    text = re.sub(r"^ExecStart=\S+", "ExecStart=/bin/true", UNIT.read_text(), flags=re.MULTILINE)
    path = tmp_path / UNIT.name
    path.write_text(text)
    return path


def test_unit_passes_systemd_analyze(runnable_unit: Path) -> None:
    verify = subprocess.run(
        ["systemd-analyze", "verify", str(runnable_unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert verify.returncode == 0, verify.stderr
    assert verify.stderr == ""
    # Exposure 4.0 of 10 at most ("OK" in systemd's words; 3.2 when written).
    security = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", "--threshold=40", str(runnable_unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert security.returncode == 0, security.stdout[-2000:] + security.stderr


# ---- compose.yaml ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(document, dict)
    return document


def test_compose_matches_the_compose_specification(compose: dict[str, Any]) -> None:
    try:
        from check_jsonschema.builtin_schemas import vendor  # type: ignore[import-untyped]
    except ImportError:
        missing_dependency("check-jsonschema (ships the Compose Specification's schema)")
    import jsonschema

    schema_file = Path(vendor.__file__).parent / "compose-spec.json"
    schema = json.loads(schema_file.read_text())
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = sorted(validator.iter_errors(compose), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


def test_compose_services_and_their_order(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {
        "tidegate",
        "timescaledb",
        "minio",
        "minio-init",
        "prometheus",
        "alertmanager",
        "grafana",
    }
    assert services["tidegate"]["build"] == {"context": "..", "dockerfile": "docker/Dockerfile"}
    assert services["timescaledb"]["image"] == "timescale/timescaledb:latest-pg16"
    for name, service in services.items():
        for needed, condition in service.get("depends_on", {}).items():
            assert needed in services, f"{name} depends on unknown {needed}"
            if condition["condition"] == "service_healthy":
                assert "healthcheck" in services[needed], f"{name} waits on {needed}'s health"
    assert services["tidegate"]["depends_on"]["minio-init"] == {
        "condition": "service_completed_successfully"
    }
    # The drain outlasts docker's default 10 s before SIGKILL.
    assert services["tidegate"]["stop_grace_period"] == "60s"
    assert "/readyz" in " ".join(services["tidegate"]["healthcheck"]["test"])


def test_compose_has_no_default_secrets_or_anonymous_admin(compose: dict[str, Any]) -> None:
    grafana = compose["services"]["grafana"]["environment"]
    assert grafana["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    assert grafana["GF_SECURITY_ADMIN_PASSWORD"] == "${GRAFANA_ADMIN_PASSWORD:?set it}"
    text = COMPOSE.read_text()
    for name in REQUIRED_VARIABLES:
        uses = re.findall(r"\$\{" + name + r"([^}]*)\}", text)
        assert uses, f"{name} is not used"
        # Required (`:?`), never defaulted (`:-`) to a password anyone can read here.
        assert all(use == ":?set it" for use in uses), f"{name}: {uses}"


def test_compose_tidegate_environment_is_valid_configuration(compose: dict[str, Any]) -> None:
    env = {
        key: re.sub(r"\$\{\w+:\?[^}]*\}", "secret", str(value))
        for key, value in compose["services"]["tidegate"]["environment"].items()
    }
    config = load(environ=env)
    assert config.traces.store == "s3://tidegate-traces/blocks"
    assert config.storage.dsn.startswith("postgresql://")
    assert urlsplit(config.storage.dsn).hostname == "timescaledb"
    assert urlsplit(config.s3.endpoint_url).hostname == "minio"


def local_files(compose: dict[str, Any]) -> set[str]:
    """Every file or directory of the repository the stack mounts, relative to docker/."""
    paths = {f"{compose['services']['tidegate']['build']['context']}/docker/Dockerfile"}
    for service in compose["services"].values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                paths.add(source)
    for secret in compose.get("secrets", {}).values():
        paths.add(secret["file"])
    return {str(Path(p)) for p in paths}


def test_compose_local_files_exist(compose: dict[str, Any]) -> None:
    files = local_files(compose)
    assert files >= OPERATOR_SECRETS
    for relative in sorted(files - OPERATOR_SECRETS):
        assert (DOCKER / relative).exists(), f"docker/{relative} does not exist"
    for secret in OPERATOR_SECRETS:
        assert "secrets" in Path(secret).parts  # under a directory meant to stay uncommitted


def read_yaml(relative: str) -> Any:
    return yaml.safe_load((DOCKER / relative).read_text())


def test_prometheus_targets_are_compose_services(compose: dict[str, Any]) -> None:
    prometheus = read_yaml("prometheus/prometheus.yml")
    services = compose["services"]
    targets = [
        target
        for section in (
            *prometheus.get("scrape_configs", []),
            *prometheus.get("alerting", {}).get("alertmanagers", []),
        )
        for static in section.get("static_configs", [])
        for target in static["targets"]
    ]
    assert "tidegate:9464" in targets
    for target in targets:
        assert target.partition(":")[0] in services, target
    mounts = [v.split(":")[1] for v in services["prometheus"]["volumes"] if v.startswith(".")]
    for rule_file in prometheus.get("rule_files", []):
        assert str(Path("/etc/prometheus") / rule_file) in mounts, rule_file


def test_grafana_provisioning_matches_the_mounts(compose: dict[str, Any]) -> None:
    dashboards = read_yaml("grafana/provisioning/dashboards/tidegate.yaml")
    datasources = read_yaml("grafana/provisioning/datasources/tidegate.yaml")
    grafana = compose["services"]["grafana"]
    mounts = {v.split(":")[0]: v.split(":")[1] for v in grafana["volumes"]}
    paths = {provider["options"]["path"] for provider in dashboards["providers"]}
    assert paths == {mounts["./grafana/dashboards"]}
    for datasource in datasources["datasources"]:
        url = datasource["url"]
        host = urlsplit(url if "//" in url else f"//{url}").hostname
        assert host in compose["services"], datasource["name"]
        # Variables the provisioning reads from Grafana's environment.
        for variable in re.findall(r"\$(\w+)", json.dumps(datasource)):
            assert variable in grafana["environment"], variable
