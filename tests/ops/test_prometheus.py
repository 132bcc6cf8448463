"""The Prometheus files of the operations kit (docker/prometheus/): promtool's checks, the alert
unit tests, and every alert and dashboard expression evaluated by a real Prometheus scraping a
real daemon (the ingest panels' with data)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as ts

from tests import payloads as p
from tests.integration.test_serve_command import serve, terminate
from tests.ops.conftest import PrometheusTools
from tests.ports import free_port

pytestmark = pytest.mark.timeout(60)

REPO = Path(__file__).resolve().parents[2]
PROMETHEUS_FILES = REPO / "docker" / "prometheus"
ALERTS = PROMETHEUS_FILES / "alerts.yml"
UNIT_TESTS = Path(__file__).parent / "alerts_test.yml"
TRACE_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
# prometheus_client's suffixes for each metric family type.
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}


def promtool(tools: PrometheusTools, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tools.promtool, *args], capture_output=True, text=True, timeout=30, check=False
    )


def test_promtool_accepts_the_rules_and_the_config(
    prometheus_tools: PrometheusTools, tmp_path: Path
) -> None:
    rules = promtool(prometheus_tools, "check", "rules", str(ALERTS))
    assert rules.returncode == 0, rules.stdout + rules.stderr
    # A deployment copies both files into one directory; the rule file path is relative to it.
    for name in ("prometheus.yml", "alerts.yml"):
        shutil.copy(PROMETHEUS_FILES / name, tmp_path / name)
    config = promtool(prometheus_tools, "check", "config", str(tmp_path / "prometheus.yml"))
    assert config.returncode == 0, config.stdout + config.stderr
    assert "1 rule files found" in config.stdout


def test_down_and_circuit_open_alerts_fire_within_5_minutes(
    prometheus_tools: PrometheusTools,
) -> None:
    result = promtool(prometheus_tools, "test", "rules", str(UNIT_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr


@dataclass
class PrometheusServer:
    url: str
    log: Path

    def get(self, path: str, **params: str) -> dict[str, Any]:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        try:
            with urllib.request.urlopen(f"{self.url}{path}{query}", timeout=5) as reply:
                body: dict[str, Any] = json.load(reply)
        except urllib.error.HTTPError as exc:  # 400/422 carry the PromQL error as JSON
            with exc:
                body = json.load(exc)
        return body

    def query(self, expr: str) -> dict[str, Any]:
        return self.get("/api/v1/query", query=expr)

    def wait_for(self, expr: str, deadline: float) -> list[dict[str, Any]]:
        """Poll until ``expr`` returns a non-empty vector; the samples."""
        answer: dict[str, Any] = {}
        while time.monotonic() < deadline:
            answer = self.query(expr)
            if answer.get("status") == "success" and answer["data"]["result"]:
                return list(answer["data"]["result"])
            time.sleep(0.25)
        pytest.fail(f"no result for {expr}: {answer}\n{self.log_tail()}")

    def log_tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-30:])


@contextmanager
def run_prometheus(
    tools: PrometheusTools, workdir: Path, target: str, deadline: float
) -> Iterator[PrometheusServer]:
    """Prometheus on a free loopback port, scraping ``target`` every second with the alert
    rules loaded (no Alertmanager: only the expressions are under test)."""
    config = workdir / "prometheus.yml"
    # JSON is YAML: the generated configuration needs no YAML library.
    config.write_text(
        json.dumps(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(ALERTS)],
                "scrape_configs": [
                    {
                        "job_name": "tidegate",
                        "metrics_path": "/metrics",
                        "static_configs": [{"targets": [target]}],
                    }
                ],
            }
        )
    )
    port = free_port()
    server = PrometheusServer(url=f"http://127.0.0.1:{port}", log=workdir / "prometheus.log")
    with server.log.open("w") as log:
        process = subprocess.Popen(
            [
                tools.prometheus,
                f"--config.file={config}",
                f"--storage.tsdb.path={workdir / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        while True:
            if process.poll() is not None:
                pytest.fail(f"prometheus exited with {process.returncode}:\n{server.log_tail()}")
            try:
                with urllib.request.urlopen(f"{server.url}/-/ready", timeout=1) as reply:
                    if reply.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"prometheus did not become ready:\n{server.log_tail()}")
            time.sleep(0.1)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def send_load(target: str) -> None:
    """300 data points in three requests, and five spans in one."""
    for batch in range(3):
        points = [p.number_point(float(i), {"i": i}) for i in range(100)]
        payload = p.request([p.gauge(f"ops_load_{batch}", points)]).SerializeToString()
        assert p.export(target, payload).partial_success.rejected_data_points == 0
    request = ts.ExportTraceServiceRequest()
    spans = request.resource_spans.add().scope_spans.add().spans
    now = p.now_ns()
    for i in range(5):
        span = spans.add(trace_id=b"\x0a" * 16, span_id=bytes([i + 1]) * 8, name=f"op{i}")
        span.start_time_unix_nano, span.end_time_unix_nano = now, now + 1000
    with grpc.insecure_channel(target) as channel:
        reply = channel.unary_unary(TRACE_METHOD)(request.SerializeToString(), timeout=10)
    assert ts.ExportTraceServiceResponse.FromString(reply).partial_success.rejected_spans == 0


def exposed_metric_names(http_url: str) -> set[str]:
    """Every sample name /metrics can expose, labelled families without children included."""
    with urllib.request.urlopen(f"{http_url}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    names = set()
    for family, kind in re.findall(r"^# TYPE (\S+) (\S+)$", text, re.MULTILINE):
        base = family.removesuffix("_total") if kind == "counter" else family
        names.update(base + suffix for suffix in SUFFIXES.get(kind, ("",)))
    return names


DASHBOARDS = Path(__file__).resolve().parents[2] / "docker" / "grafana" / "dashboards"
# Grafana's own variables in the dashboards' PromQL, as Grafana would fill them in.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "1h"}


def dashboard_promql() -> list[tuple[str, str]]:
    """(panel title, expression) of every Prometheus target in the committed dashboards."""
    found = []
    for path in sorted(DASHBOARDS.glob("*.json")):
        for panel in json.loads(path.read_text()).get("panels", []):
            for target in panel.get("targets") or []:
                expr = target.get("expr")
                if expr:
                    for variable, value in GRAFANA_VARIABLES.items():
                        expr = expr.replace(variable, value)
                    found.append((f"{path.name}: {panel.get('title')}", expr))
    return found


def test_every_alert_and_dashboard_expression_evaluates_on_a_live_daemon(
    prometheus_tools: PrometheusTools, database_dsn: str, tmp_path: Path
) -> None:
    deadline = time.monotonic() + 45
    data_dir = tmp_path / "data"
    with serve("--dsn", database_dsn, "--data-dir", str(data_dir)) as (process, target, http):
        http_target = urllib.parse.urlsplit(http).netloc
        with run_prometheus(prometheus_tools, tmp_path, http_target, deadline) as prometheus:
            # A first scrape before the load, so that rate() sees the counters move.
            prometheus.wait_for('up{job="tidegate"} == 1', deadline)
            send_load(target)
            accepted = prometheus.wait_for("rate(tidegate_points_accepted_total[1m]) > 0", deadline)
            assert float(accepted[0]["value"][1]) > 0
            spans = prometheus.wait_for("rate(tidegate_spans_accepted_total[1m]) > 0", deadline)
            assert float(spans[0]["value"][1]) > 0
            # This series starts with the first request, so rate() may not see it move.
            ok = prometheus.wait_for(
                'tidegate_export_requests_total{signal="metrics", status="OK"} >= 3', deadline
            )
            assert float(ok[0]["value"][1]) >= 3

            # The rules as Prometheus loaded them from alerts.yml, once each has been evaluated.
            while True:
                groups = prometheus.get("/api/v1/rules")["data"]["groups"]
                rules = [rule for group in groups for rule in group["rules"]]
                if rules and all(rule["health"] != "unknown" for rule in rules):
                    break
                if time.monotonic() > deadline:
                    pytest.fail(f"rules not evaluated: {rules}\n{prometheus.log_tail()}")
                time.sleep(0.25)
            names = re.findall(r"^\s*- alert: (\S+)$", ALERTS.read_text(), re.MULTILINE)
            assert [rule["name"] for rule in rules] == names
            for rule in rules:
                assert rule["health"] == "ok", rule
                answer = prometheus.query(rule["query"])
                assert answer["status"] == "success", (rule["name"], answer)
                assert answer["data"]["resultType"] == "vector", (rule["name"], answer)

            # Every dashboard query evaluates; those of the ingest panels return data.
            panels = dashboard_promql()
            assert len(panels) >= 20
            for title, expr in panels:
                answer = prometheus.query(expr)
                assert answer["status"] == "success", (title, expr, answer)
                if "_accepted_total" in expr:
                    assert answer["data"]["result"], (title, expr, "no data")

            # An expression on a misspelled metric evaluates just as well, to nothing.
            exprs = [rule["query"] for rule in rules] + [expr for _, expr in panels]
            referenced = {m for expr in exprs for m in re.findall(r"\btidegate_\w+", expr)}
            missing = referenced - exposed_metric_names(http)
            assert not missing, f"alerts or dashboards name metrics the daemon lacks: {missing}"
        terminate(process)
