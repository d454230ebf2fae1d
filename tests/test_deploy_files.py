"""The deploy files (deploy/: Dockerfile, compose.yaml, the Helm chart) checked offline.

No container engine, cluster or helm binary is needed: hadolint lints the Dockerfile, the
compose spec's JSON schema checks compose.yaml, helm-python-sdk (Helm's Go SDK in a wheel)
lints and renders the chart, and kubernetes-validate checks the rendered objects against the
Kubernetes 1.33 API. The ServiceMonitor is a CRD that kubernetes-validate does not know (it
passes it with a warning): it is checked here against the fields the chart uses, as the
prometheus-operator CRD defines them. Then the things an operator relies on: probes, the
worker's volume, the migrate hook, non-root, and every ABAXUS_* variable being a setting.
"""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python
import jsonschema
import pytest
import yaml

from abaxus.settings import Settings
from abaxus.telemetry import Telemetry

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
CHART = DEPLOY / "helm" / "abaxus"
KUBERNETES_VERSION = "1.33.0"

# What an operator would give: passwords, a well-formed bootstrap key, a Stripe key.
SECRETS = {
    "postgresPassword": "pg-example",
    "clickhousePassword": "ch-example",
    "bootstrapKey": "sk_live_" + "A1" * 20,
    "stripeSecretKey": "sk_test_example",
    "stripeWebhookSecret": "whsec_example",
    "redisPassword": "rd-example",
}
OVERRIDE = {
    "secrets": SECRETS,
    "api": {"replicas": 3, "autoscaling": {"enabled": False}},
    "redis": {"auth": True},
    "serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}, "apiKeySecret": {"name": "abaxus-metrics-key"}},
    "extraEnv": {"ABAXUS_EPOCH_SECONDS": "3", "ABAXUS_RATE_LIMIT_RPM": "12000"},
}


def _tool(name: str) -> str:
    """A validator's console script, from this interpreter's environment (the test extra)."""
    path = Path(sys.executable).parent / name
    assert path.exists(), f"{name} is missing: install the test extra (pip install '.[test]')."
    return str(path)


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)


# ---------------------------------------------------------------- Dockerfile


def _dockerfile_stages() -> list[list[tuple[str, str]]]:
    """The Dockerfile's instructions (continuation lines joined, comments dropped), per stage."""
    text = re.sub(r"\\\n(?:\s*#[^\n]*\n)*", " ", (DEPLOY / "Dockerfile").read_text())
    stages: list[list[tuple[str, str]]] = [[]]
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        keyword, _, rest = line.strip().partition(" ")
        if keyword.upper() == "FROM":
            stages.append([])
        stages[-1].append((keyword.upper(), rest.strip()))
    return stages[1:]


class TestDockerfile:
    def test_hadolint_finds_nothing(self):
        result = _run(_tool("hadolint"), str(DEPLOY / "Dockerfile"))
        assert result.returncode == 0, result.stdout + result.stderr

    def test_runtime_stage_is_slim_python_and_runs_abaxus_as_non_root(self):
        *builds, runtime = _dockerfile_stages()
        assert builds, "multi-stage: the wheel is built in a stage of its own"
        default_image = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", (DEPLOY / "Dockerfile").read_text(), re.M)
        assert default_image is not None
        assert default_image.group(1) == "python:3.11-slim"
        assert runtime[0] == ("FROM", "${PYTHON_IMAGE} AS runtime")
        user = [rest for kw, rest in runtime if kw == "USER"]
        assert user, "the runtime stage sets USER"
        assert user[-1].split(":")[0] not in ("root", "0"), user
        body = dict(runtime)
        assert body["ENTRYPOINT"] == '["abaxus"]'
        assert body["CMD"] == '["serve"]'
        assert set(body["EXPOSE"].split()) == {"8080", "8081"}
        assert "/var/lib/abaxus" in body["VOLUME"]
        # Nothing is compiled or apt-installed in the runtime image; only the venv is copied in.
        assert not any(kw == "RUN" and re.search(r"apt-get|apk |gcc|build-essential", rest) for kw, rest in runtime)
        assert any(kw == "COPY" and rest.startswith("--from=build") for kw, rest in runtime)

    def test_image_environment_is_real_settings_and_data_dir_is_the_volume(self):
        runtime = _dockerfile_stages()[-1]
        env: dict[str, str] = {}
        for kw, rest in runtime:
            if kw == "ENV":
                env.update(re.findall(r"(\w+)=(\S+)", rest))
        abaxus = {k: v for k, v in env.items() if k.startswith("ABAXUS_")}
        settings = Settings.from_env(abaxus)
        assert str(settings.data_dir) == "/var/lib/abaxus"
        assert settings.host == "0.0.0.0"

    def test_build_context_keeps_what_the_wheel_needs(self):
        """.dockerignore must not drop a package folder, pyproject.toml or README.md (pip wheel . needs them)."""
        ignored = {line.strip().rstrip("/") for line in (ROOT / ".dockerignore").read_text().splitlines()
                   if line.strip() and not line.startswith("#")}
        project = tomllib.loads((ROOT / "pyproject.toml").read_text())
        needed = set(project["tool"]["setuptools"]["package-dir"].values()) | {"pyproject.toml", project["project"]["readme"]}
        assert not needed & ignored, f"excluded from the build context but needed: {sorted(needed & ignored)}"
        assert {".git", "tests"} <= ignored


# ---------------------------------------------------------------- compose


def _env_file(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line and not line.startswith("#"))
    return {k.strip(): v.strip() for k, v in pairs}


def _interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default}, ${VAR:?error} and $$; a required VAR must be in env."""

    def one(m: re.Match[str]) -> str:
        name, op, arg = m.group(1), m.group(2) or "", m.group(3) or ""
        if op.endswith("?"):
            assert name in env, f"compose.yaml requires {name} but compose.env.example does not set it"
        given = env.get(name, "")
        return arg if op == ":-" and not given else given

    return re.sub(r"\$\{(\w+)(?:(:?[-?])([^}]*))?\}", one, value).replace("$$", "$")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


@pytest.fixture(scope="module")
def compose_env() -> dict[str, str]:
    return _env_file(DEPLOY / "compose.env.example")


OUR_SERVICES = ("migrate", "api-1", "api-2", "worker")


class TestCompose:
    def test_compose_spec_schema_accepts_it(self):
        result = _run(_tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(DEPLOY / "compose.yaml"))
        assert result.returncode == 0, result.stdout + result.stderr

    def test_api_replicas_and_worker_start_after_migrate_succeeded(self, compose):
        services = compose["services"]
        assert services["migrate"]["command"] == ["migrate"]
        assert services["migrate"]["restart"] == "no"
        for name in ("api-1", "api-2", "worker"):
            assert services[name]["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}, name
        for name in ("api-1", "api-2"):
            assert services[name]["command"] == ["serve", "--role", "api"]
        assert services["worker"]["command"][:3] == ["serve", "--role", "worker"]
        assert {"postgres", "clickhouse"} <= set(services["migrate"]["depends_on"])

    def test_every_abaxus_service_environment_is_accepted_by_settings(self, compose, compose_env):
        for name in OUR_SERVICES:
            env = {k: _interpolate(str(v), compose_env) for k, v in compose["services"][name]["environment"].items()}
            settings = Settings.from_env(env)  # refuses unknown ABAXUS_* names and bad values
            assert settings.database_url is not None
            assert settings.database_url.startswith("postgresql+psycopg://abaxus:change-me")
            assert settings.clickhouse_url is not None
            assert settings.kafka_brokers == "kafka:9092"
            assert settings.rate_limit_storage.startswith("redis://"), "replicas share rate-limit counters"
            assert settings.usage_port is None, "no chDB front beside a ClickHouse server"

    def test_worker_keeps_its_recovery_directory_on_a_named_volume(self, compose):
        worker = compose["services"]["worker"]
        data_dir = worker["environment"]["ABAXUS_DATA_DIR"]
        mounts = dict(v.split(":", 1) for v in worker["volumes"])
        assert data_dir in mounts.values()
        volume = next(src for src, dst in mounts.items() if dst == data_dir)
        assert volume in compose["volumes"], "a named volume, not a container's own layer"

    def test_healthchecks_probe_the_ports_the_services_listen_on(self, compose):
        services = compose["services"]
        for name in ("postgres", "clickhouse", "kafka", "redis", "api-1", "api-2", "worker"):
            assert "healthcheck" in services[name], name
        for name, port in (("api-1", "ABAXUS_PORT"), ("api-2", "ABAXUS_PORT"), ("worker", "ABAXUS_WORKER_PORT")):
            probe = " ".join(services[name]["healthcheck"]["test"])
            assert f"127.0.0.1:{services[name]['environment'][port]}/readyz" in probe, name

    def test_no_secret_is_committed_in_compose_yaml(self):
        text = (DEPLOY / "compose.yaml").read_text()
        for name in ("POSTGRES_PASSWORD", "CLICKHOUSE_PASSWORD"):
            values = re.findall(rf"{name}: (\S+)", text)
            assert values, name
            assert all(v.startswith(f"${{{name}:?") for v in values), f"{name} must come from the env file: {values}"
        assert "sk_live_" not in text


# ---------------------------------------------------------------- Helm chart


def _render(values: dict[str, Any]) -> dict[str, str]:
    return helm_python.Chart.load(str(CHART)).render(values, name="abaxus", namespace="billing")


def _objects(rendered: dict[str, str]) -> list[dict[str, Any]]:
    return [doc for path, text in sorted(rendered.items()) if path.endswith(".yaml")
            for doc in yaml.safe_load_all(text) if doc]


@pytest.fixture(scope="module")
def default_objects() -> list[dict[str, Any]]:
    return _objects(_render({}))


@pytest.fixture(scope="module")
def override_objects() -> list[dict[str, Any]]:
    return _objects(_render(OVERRIDE))


@pytest.fixture(scope="module", params=["default", "override"])
def objects(request, default_objects, override_objects) -> list[dict[str, Any]]:
    return default_objects if request.param == "default" else override_objects


def _one(objects: list[dict[str, Any]], kind: str, component: str | None = None) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind
             and (component is None or o["metadata"]["labels"].get("app.kubernetes.io/component") == component)]
    assert len(found) == 1, f"{len(found)} {kind} objects for {component}"
    return found[0]


def _pod_specs(objects: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for o in objects:
        if o["kind"] in ("Deployment", "StatefulSet", "Job"):
            yield f"{o['kind']}/{o['metadata']['name']}", o["spec"]["template"]["spec"]


def _container_env(container: dict[str, Any], secrets: dict[str, dict[str, str]]) -> dict[str, str]:
    """The container's environment as the kubelet makes it: Secret keys read, $(VAR) expanded."""
    env: dict[str, str] = {}
    for item in container["env"]:
        if "valueFrom" in item:
            ref = item["valueFrom"]["secretKeyRef"]
            value = secrets.get(ref["name"], {}).get(ref["key"])
            assert value is not None or ref.get("optional"), f"{item['name']}: Secret {ref['name']} lacks {ref['key']}"
            if value is not None:
                env[item["name"]] = value
        else:
            env[item["name"]] = re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], item["value"])
    return env


# The fields of monitoring.coreos.com/v1 ServiceMonitor the chart uses, with the types the
# prometheus-operator CRD (v0.93) gives them; unknown fields are refused, as in kubernetes-validate --strict.
_STR = {"type": "string"}
_DURATION = {"type": "string",
             "pattern": r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"}
SERVICE_MONITOR_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "ServiceMonitor"},
        "metadata": {"type": "object", "required": ["name"], "additionalProperties": False, "properties": {
            "name": _STR, "labels": {"type": "object", "additionalProperties": _STR}}},
        "spec": {"type": "object", "required": ["endpoints", "selector"], "additionalProperties": False, "properties": {
            "selector": {"type": "object", "additionalProperties": False,
                         "properties": {"matchLabels": {"type": "object", "additionalProperties": _STR}}},
            "namespaceSelector": {"type": "object", "additionalProperties": False,
                                  "properties": {"any": {"type": "boolean"}, "matchNames": {"type": "array", "items": _STR}}},
            "endpoints": {"type": "array", "minItems": 1, "items": {
                "type": "object", "additionalProperties": False, "properties": {
                    "port": _STR, "path": _STR, "interval": _DURATION, "scrapeTimeout": _DURATION,
                    "authorization": {"type": "object", "additionalProperties": False, "properties": {
                        "type": _STR,
                        "credentials": {"type": "object", "required": ["key"], "additionalProperties": False,
                                        "properties": {"name": _STR, "key": _STR, "optional": {"type": "boolean"}}}}}}}},
        }},
    },
}


class TestHelmChart:
    @pytest.mark.parametrize("values", [{}, OVERRIDE], ids=["default", "override"])
    def test_helm_lint_finds_no_warning(self, values):
        report = helm_python.lint(str(CHART), values, strict=True, kube_version=f"v{KUBERNETES_VERSION}")
        assert report["errors"] == []
        assert [m for m in report["messages"] if m["severity"] >= 2] == []  # 1 is info ("icon is recommended")

    def test_rendered_objects_are_valid_kubernetes_1_33(self, default_objects, override_objects, tmp_path):
        files = []
        for i, obj in enumerate(default_objects + override_objects):
            if obj["apiVersion"].startswith("monitoring.coreos.com/"):
                continue  # a CRD: see test_service_monitors_match_the_crd_fields
            files.append(tmp_path / f"{i:02d}-{obj['kind']}.yaml")
            files[-1].write_text(yaml.safe_dump(obj))
        result = _run(_tool("kubernetes-validate"), "-k", KUBERNETES_VERSION, "--strict", *map(str, files))
        assert result.returncode == 0, result.stdout + result.stderr
        # It passes a kind it has no schema for with a warning: every file must really be checked.
        assert result.stdout.count(" passed for resource ") == len(files), result.stdout + result.stderr

    def test_service_monitors_match_the_crd_fields(self, override_objects, default_objects):
        assert not [o for o in default_objects if o["kind"] == "ServiceMonitor"], "off unless serviceMonitor.enabled"
        monitors = [o for o in override_objects if o["kind"] == "ServiceMonitor"]
        assert len(monitors) == 2
        services = {o["metadata"]["labels"]["app.kubernetes.io/component"]: o for o in override_objects if o["kind"] == "Service"}
        for monitor in monitors:
            jsonschema.validate(monitor, SERVICE_MONITOR_SCHEMA)
            # The monitor selects exactly its Service, through a port that Service names.
            selected = [s for s in services.values()
                        if monitor["spec"]["selector"]["matchLabels"].items() <= s["metadata"]["labels"].items()]
            assert len(selected) == 1, monitor["metadata"]["name"]
            port_names = {p["name"] for p in selected[0]["spec"]["ports"]}
            for endpoint in monitor["spec"]["endpoints"]:
                assert endpoint["port"] in port_names
                assert endpoint["path"] == "/metrics"
                if monitor["metadata"]["labels"]["app.kubernetes.io/component"] == "api":  # /metrics asks for a read key
                    assert endpoint["authorization"]["credentials"] == {"name": "abaxus-metrics-key", "key": "api-key"}
        assert {m["metadata"]["labels"]["app.kubernetes.io/component"] for m in monitors} == {"api", "worker"}

    def test_service_monitor_without_a_read_key_is_refused(self):
        with pytest.raises(helm_python.HelmRenderError, match=r"apiKeySecret\.name is required"):
            _render({"serviceMonitor": {"enabled": True}})

    def test_api_is_ready_on_readyz_and_alive_on_healthz(self, objects):
        deployment = _one(objects, "Deployment", "api")
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert container["args"] == ["serve", "--role", "api"]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports == {"http": 8080}
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
        service = _one(objects, "Service", "api")
        assert service["spec"]["selector"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()

    def test_api_replicas_come_from_the_autoscaler_or_the_values(self, default_objects, override_objects):
        deployment = _one(default_objects, "Deployment", "api")
        hpa = _one(default_objects, "HorizontalPodAutoscaler")
        assert "replicas" not in deployment["spec"], "the HPA owns the count; a fixed one would fight it on upgrade"
        assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                                 "name": deployment["metadata"]["name"]}
        assert hpa["spec"]["minReplicas"] >= 2
        assert _one(override_objects, "Deployment", "api")["spec"]["replicas"] == 3
        assert not [o for o in override_objects if o["kind"] == "HorizontalPodAutoscaler"]

    def test_worker_is_one_statefulset_with_its_volume_at_the_data_dir(self, objects):
        worker = _one(objects, "StatefulSet", "worker")
        spec = worker["spec"]
        assert spec["replicas"] == 1, "one process owns the Bytewax recovery directory"
        (claim,) = spec["volumeClaimTemplates"]
        (container,) = spec["template"]["spec"]["containers"]
        data_dir = next(e["value"] for e in container["env"] if e["name"] == "ABAXUS_DATA_DIR")
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        assert mounts[data_dir] == claim["metadata"]["name"]
        assert claim["metadata"]["name"] not in {v["name"] for v in spec["template"]["spec"].get("volumes", [])}, \
            "the claim template, not an emptyDir of the same name"
        assert container["args"][:3] == ["serve", "--role", "worker"]
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        headless = _one(objects, "Service", "worker")
        assert headless["spec"]["clusterIP"] == "None"
        assert spec["serviceName"] == headless["metadata"]["name"]

    def test_more_bytewax_workers_than_partitions_is_refused(self):
        with pytest.raises(helm_python.HelmRenderError, match=r"more than kafka\.partitions"):
            _render({"kafka": {"partitions": 2}, "worker": {"workers": 4}})

    def test_migrate_is_a_pre_install_and_pre_upgrade_hook_after_its_secret(self, objects):
        job = _one(objects, "Job", "migrate")
        annotations = job["metadata"]["annotations"]
        assert set(annotations["helm.sh/hook"].split(",")) == {"pre-install", "pre-upgrade"}
        assert "before-hook-creation" in annotations["helm.sh/hook-delete-policy"]
        (container,) = job["spec"]["template"]["spec"]["containers"]
        assert container["args"] == ["migrate"]
        assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
        # Hooks run before the release's objects exist: the Secret it reads must be a hook too, made first.
        names = {ref["valueFrom"]["secretKeyRef"]["name"] for ref in container["env"] if "valueFrom" in ref}
        (secret_name,) = names
        secret = next(o for o in objects if o["kind"] == "Secret" and o["metadata"]["name"] == secret_name)
        secret_hook = secret["metadata"]["annotations"]
        assert set(secret_hook["helm.sh/hook"].split(",")) == {"pre-install", "pre-upgrade"}
        assert int(secret_hook["helm.sh/hook-weight"]) < int(annotations["helm.sh/hook-weight"])

    def test_migrate_reads_an_existing_secret_directly(self):
        objects = _objects(_render({"secrets": {"existingSecret": "abaxus-keys"}}))
        assert not [o for o in objects if o["kind"] == "Secret"], "the chart makes no Secret of its own"
        for where, pod in _pod_specs(objects):
            refs = {e["valueFrom"]["secretKeyRef"]["name"] for e in pod["containers"][0]["env"] if "valueFrom" in e}
            assert refs == {"abaxus-keys"}, where

    def test_every_container_runs_as_non_root_with_a_read_only_root(self, objects):
        specs = list(_pod_specs(objects))
        assert len(specs) == 3
        for where, pod in specs:
            for container in pod["containers"]:
                context = {**pod.get("securityContext", {}), **container.get("securityContext", {})}
                assert context["runAsNonRoot"] is True, where
                assert context.get("runAsUser", 1) != 0, where
                assert context["allowPrivilegeEscalation"] is False, where
                assert context["readOnlyRootFilesystem"] is True, where
                assert context["capabilities"]["drop"] == ["ALL"], where
                assert container["resources"]["requests"], where
                assert container["resources"]["limits"]["memory"], where

    def test_every_container_environment_is_accepted_by_settings(self, objects):
        secrets = {o["metadata"]["name"]: {k: base64.b64decode(v).decode() for k, v in (o.get("data") or {}).items()}
                   for o in objects if o["kind"] == "Secret"}
        if not any(secrets.values()):  # default values: the operator supplies the passwords
            secrets = {name: {"postgres-password": "pg", "clickhouse-password": "ch"} for name in secrets}
        for where, pod in _pod_specs(objects):
            (container,) = pod["containers"]
            env = _container_env(container, secrets)
            settings = Settings.from_env(env)  # refuses unknown ABAXUS_* names and bad values
            assert str(settings.data_dir) == "/var/lib/abaxus", where
            assert settings.database_url == f"postgresql+psycopg://abaxus:{env['POSTGRES_PASSWORD']}@postgres:5432/abaxus"
            assert settings.clickhouse_url == f"http://abaxus:{env['CLICKHOUSE_PASSWORD']}@clickhouse:8123/abaxus"
            assert settings.kafka_partitions == 8
            assert settings.usage_port is None, where

    def test_override_values_reach_the_settings(self, override_objects):
        secrets = {o["metadata"]["name"]: {k: base64.b64decode(v).decode() for k, v in o["data"].items()}
                   for o in override_objects if o["kind"] == "Secret"}
        (container,) = _one(override_objects, "Deployment", "api")["spec"]["template"]["spec"]["containers"]
        settings = Settings.from_env(_container_env(container, secrets))
        assert settings.bootstrap_key == SECRETS["bootstrapKey"]
        assert settings.stripe_webhook_secret == SECRETS["stripeWebhookSecret"]
        assert settings.epoch_seconds == 3
        assert settings.rate_limit_rpm == 12000
        assert settings.rate_limit_storage == "redis://:rd-example@redis:6379/0"

    def test_extra_env_cannot_override_what_the_chart_owns(self):
        with pytest.raises(helm_python.HelmRenderError, match="the chart sets ABAXUS_DATA_DIR itself"):
            _render({"extraEnv": {"ABAXUS_DATA_DIR": "/elsewhere"}})


# ---------------------------------------------------------------- systemd and the env example


class TestSystemdFiles:
    def test_env_example_names_only_real_settings(self):
        """Every variable in abaxus.env.example, commented-out ones included, is a setting Abaxus accepts."""
        lines = [line.lstrip("# ").strip() for line in (DEPLOY / "abaxus.env.example").read_text().splitlines()]
        env = dict(line.split("=", 1) for line in lines if re.match(r"^[A-Z][A-Z0-9_]*=", line))
        assert {"ABAXUS_KAFKA_PARTITIONS", "ABAXUS_WORKER_PORT", "ABAXUS_USAGE_HOST", "ABAXUS_USAGE_PORT",
                "ABAXUS_USAGE_PASSWORD"} <= set(env)
        Settings.from_env({k: v for k, v in env.items() if not v.endswith("...")})

    def test_systemd_analyze_accepts_the_unit(self, tmp_path):
        """Where systemd-analyze exists (it is no pip package): no unknown key, no bad value."""
        analyze = shutil.which("systemd-analyze")
        if analyze is None:
            pytest.skip("systemd-analyze is not installed")
        fake = tmp_path / "abaxus"  # verify wants the ExecStart binary to exist
        fake.write_text("#!/bin/sh\n")
        fake.chmod(0o755)
        unit = tmp_path / "abaxus.service"
        unit.write_text((DEPLOY / "abaxus.service").read_text().replace("/opt/abaxus/venv/bin/abaxus", str(fake)))
        result = _run(analyze, "verify", str(unit))
        assert result.returncode == 0, result.stderr
        assert result.stderr.strip() == "", result.stderr  # unknown keys are only warned about

    def test_unit_runs_migrate_before_serve_from_the_env_file(self):
        unit = (DEPLOY / "abaxus.service").read_text()
        assert re.search(r"^EnvironmentFile=/etc/abaxus/abaxus.env$", unit, re.M)
        assert re.search(r"^ExecStartPre=\S+/abaxus migrate$", unit, re.M)
        assert re.search(r"^ExecStart=\S+/abaxus serve", unit, re.M)
        assert {"[Unit]", "[Service]", "[Install]"} <= set(re.findall(r"^\[\w+\]$", unit, re.M))


# ---------------------------------------------------------------- the README


class _Recorder(dict[str, str]):
    """An empty environment that notes every name looked up in it."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: set[str] = set()

    def __getitem__(self, name: str) -> str:
        self.asked.add(name)
        return super().__getitem__(name)

    def __contains__(self, name: object) -> bool:
        self.asked.add(str(name))
        return super().__contains__(name)

    def get(self, name: str, default: Any = None) -> Any:  # type: ignore[override]
        self.asked.add(name)
        return super().get(name, default)


class TestReadme:
    def test_lists_every_setting(self):
        env = _Recorder()
        Settings.from_env(env)
        assert len(env.asked) > 20, env.asked
        readme = (DEPLOY / "README.md").read_text()
        missing = sorted(name for name in env.asked if f"`{name}`" not in readme)
        assert not missing, f"deploy/README.md does not document {missing}"

    def test_metrics_it_names_exist(self):
        """Every abaxus_* metric the README and the chart's NOTES tell operators to watch is one Abaxus exports."""
        exported: set[str] = set()
        for family in Telemetry().registry.collect():
            suffixes = {"counter": ["_total"], "histogram": ["", "_count", "_sum", "_bucket"]}.get(family.type, [""])
            exported |= {family.name + suffix for suffix in suffixes}
        text = (DEPLOY / "README.md").read_text() + (CHART / "templates" / "NOTES.txt").read_text()
        named = set(re.findall(r"\babaxus_[a-z_]+\b", text)) - {"abaxus_error"}
        assert named, "the README names the metrics to watch"
        assert not named - exported, f"not exported by abaxus.telemetry: {sorted(named - exported)}"
