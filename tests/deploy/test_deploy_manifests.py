"""deploy/: the manifests are valid offline and cannot drift from what the project runs.

The Kubernetes objects are validated against the schemas kubernetes-validate ships, in strict
mode (an unknown field fails), with no cluster and no network. The RayService is a custom
resource without a bundled schema: its pod templates are validated as PodTemplates, the rest
by hand. Commands, addresses, ports and probes are compared with docker-compose.yml and the
Dockerfile, and the Serve config with ClusterConfig, the builder and SERVICER_FUNCTIONS.
"""

from __future__ import annotations

import copy
import importlib
import json
import re
import shlex
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "kubernetes"
RAY = ROOT / "deploy" / "ray"
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
#: The oldest Kubernetes these manifests claim, and the newest kubernetes-validate 1.37 bundles.
K8S_VERSIONS = ("1.30.0", "1.37.0")
SERVERS = ("encoder", "index", "gateway")  # the gRPC servers; compose also runs the page ("ui")
COMPONENT = "app.kubernetes.io/component"


def _load_all(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def _kustomized(folder: Path) -> list[dict[str, Any]]:
    resources = yaml.safe_load((folder / "kustomization.yaml").read_text())["resources"]
    return [doc for name in resources for doc in _load_all(folder / name)]


def _k8s_of_kind(*kinds: str) -> list[dict[str, Any]]:
    return [doc for doc in _kustomized(K8S) if doc["kind"] in kinds]


def _workloads() -> dict[str, dict[str, Any]]:
    """Deployments and StatefulSets of deploy/kubernetes by component (= compose service name)."""
    return {doc["metadata"]["labels"][COMPONENT]: doc for doc in _k8s_of_kind("Deployment", "StatefulSet")}


def _container(workload: dict[str, Any]) -> dict[str, Any]:
    [container] = workload["spec"]["template"]["spec"]["containers"]
    return container


def _flag(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]


def _compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())["services"]


def _rayservice() -> dict[str, Any]:
    [doc] = _load_all(RAY / "rayservice.yaml")
    return doc


def _ray_groups() -> list[dict[str, Any]]:
    """The head group, then the worker groups."""
    cluster = _rayservice()["spec"]["rayClusterConfig"]
    return [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]


def _serve_config() -> dict[str, Any]:
    return yaml.safe_load((RAY / "serve-config.yaml").read_text())


def _application() -> dict[str, Any]:
    [application] = _serve_config()["applications"]
    return application


def _pod_specs() -> list[tuple[str, dict[str, Any]]]:
    k8s = [(w["metadata"]["name"], w["spec"]["template"]["spec"]) for w in _workloads().values()]
    ray = [(g.get("groupName", "head"), g["template"]["spec"]) for g in _ray_groups()]
    return k8s + ray


def _custom_resources(group: dict[str, Any]) -> dict[str, float]:
    """``rayStartParams.resources`` as `ray start` gets it: KubeRay passes it through a shell."""
    raw = group["rayStartParams"].get("resources")
    return json.loads(shlex.split(raw)[0]) if raw else {}


def _cpus(quantity: str | int | float) -> float:
    text = str(quantity)
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)


def _ray_cpus(group: dict[str, Any]) -> float:
    """CPUs Ray offers on one pod of the group: num-cpus, else the container's CPU limit."""
    if "num-cpus" in group["rayStartParams"]:
        return float(group["rayStartParams"]["num-cpus"])
    return _cpus(group["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"])


def _dockerfile_arg(path: Path, name: str) -> str:
    match = re.search(rf"^ARG {name}=(\S+)$", path.read_text(), re.MULTILINE)
    assert match, f"{path}: no ARG {name}=..."
    return match.group(1)


# --- (a) offline validation ---------------------------------------------------------------------


def _validatable() -> list[tuple[str, dict[str, Any]]]:
    """Every Kubernetes object of deploy/, and the RayService's pod templates as PodTemplates."""
    docs = [(f"kubernetes: {d['kind']}/{d['metadata']['name']}", d) for d in _kustomized(K8S)]
    plain = [d for d in _kustomized(RAY) if d["kind"] != "RayService"]
    docs += [(f"ray: {d['kind']}/{d['metadata']['name']}", d) for d in plain]
    for group in _ray_groups():
        name = group.get("groupName", "head")
        template = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": name}}
        docs.append((f"ray: {name} pod template", {**template, "template": group["template"]}))
    return docs


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_kubernetes_objects_validate_offline(version: str) -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    failures = []
    for where, doc in _validatable():
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            failures.append(f"{where} at {list(error.absolute_path)}: {error.message}")
    assert not failures, "\n".join(failures)


def test_strict_validation_catches_a_misspelt_field() -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    deployment = copy.deepcopy(_workloads()["encoder"])
    container = _container(deployment)
    container["readinesProbe"] = container.pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError, match="readinesProbe"):
        kubernetes_validate.validate(deployment, K8S_VERSIONS[0], strict=True)


@pytest.mark.parametrize("folder", [K8S, RAY], ids=["kubernetes", "ray"])
def test_kustomization_lists_every_manifest(folder: Path) -> None:
    listed = set(yaml.safe_load((folder / "kustomization.yaml").read_text())["resources"])
    present = {p.name for p in folder.glob("*.yaml")} - {"kustomization.yaml", "serve-config.yaml"}
    assert listed == present


# --- (d) the plain manifests run what docker-compose.yml runs ------------------------------------


def test_container_args_are_the_compose_commands() -> None:
    entrypoint = re.search(r"^ENTRYPOINT (.+)$", DOCKERFILE.read_text(), re.MULTILINE)
    assert entrypoint and json.loads(entrypoint.group(1)) == ["clipsearch"]
    compose, workloads = _compose(), _workloads()
    assert set(workloads) == {*SERVERS, "ui"}
    for name, workload in workloads.items():
        container = _container(workload)
        # args replace the image's CMD and keep its ENTRYPOINT, as compose's command does.
        assert "command" not in container and "entrypoint" not in compose[name], name
        assert container["args"] == compose[name]["command"], name
        assert container["image"].split(":")[0] == compose[name]["image"].split(":")[0], name


def test_addresses_name_the_services_of_the_compose_hosts() -> None:
    compose, workloads = _compose(), _workloads()
    services = {s["metadata"]["name"]: s for s in _k8s_of_kind("Service")}
    for name, workload in workloads.items():
        env = {e["name"]: e["value"] for e in _container(workload)["env"]}
        for variable, compose_address in compose[name]["environment"].items():
            compose_host, compose_port = compose_address.rsplit(":", 1)
            host, port = env[variable].rsplit(":", 1)
            assert port == compose_port, (name, variable)
            service = services[host]
            assert int(port) in [p["port"] for p in service["spec"]["ports"]], (name, variable)
            labels = workloads[compose_host]["spec"]["template"]["metadata"]["labels"]
            assert service["spec"]["selector"].items() <= labels.items(), (name, variable)


def test_probes_and_ports_follow_the_server_flags() -> None:
    compose, workloads = _compose(), _workloads()
    for name in SERVERS:
        container = _container(workloads[name])
        args = container["args"]
        port, metrics = int(_flag(args, "--port")), int(_flag(args, "--metrics-port"))
        assert compose[name]["healthcheck"]["test"][-1] == f"127.0.0.1:{port}", name
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert container[probe]["grpc"]["port"] == port, (name, probe)
        assert {port, metrics} <= {p["containerPort"] for p in container["ports"]}, name
    ui = _container(workloads["ui"])
    ports = {p["name"]: p["containerPort"] for p in ui["ports"]}
    compose_check = " ".join(compose["ui"]["healthcheck"]["test"])
    for probe in ("readinessProbe", "livenessProbe"):
        check = ui[probe]["httpGet"]
        assert ports[check["port"]] == int(_flag(ui["args"], "--port"))
        assert f"127.0.0.1:{ports[check['port']]}{check['path']}'" in compose_check  # the URL compose opens


def test_every_service_port_reaches_a_container_port() -> None:
    workloads = _workloads().values()
    for service in _k8s_of_kind("Service"):
        selector = service["spec"]["selector"].items()
        [pod] = [w for w in workloads if selector <= w["spec"]["template"]["metadata"]["labels"].items()]
        container_ports = _container(pod)["ports"]
        for port in service["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            key = "name" if isinstance(target, str) else "containerPort"
            assert any(p[key] == target for p in container_ports), (service["metadata"]["name"], port)


def test_pods_outlast_the_servers_grace_period() -> None:
    from clipsearch.apps.gateway.settings import GatewaySettings
    from clipsearch.server.serve import EXIT_MARGIN_S
    from encoder_service.settings import EncoderSettings
    from index_service.settings import IndexSettings

    defaults = {"encoder": EncoderSettings.grace_s, "index": IndexSettings.grace_s}
    defaults["gateway"] = GatewaySettings.grace_s
    workloads = _workloads()
    for name, default in defaults.items():
        container = _container(workloads[name])
        args = container["args"]
        grace = float(_flag(args, "--grace-s")) if "--grace-s" in args else default
        pre_stop = container.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
        sleep = float(pre_stop[1]) if pre_stop[:1] == ["sleep"] else 0.0
        # A stop ends within --grace-s + EXIT_MARGIN_S (clipsearch/server/serve.py): never SIGKILLed.
        period = workloads[name]["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        assert period >= sleep + grace + EXIT_MARGIN_S, (name, period)


def test_index_keeps_its_data_on_a_claim() -> None:
    index = _workloads()["index"]
    assert index["kind"] == "StatefulSet" and index["spec"]["replicas"] == 1  # one writer per store
    container = _container(index)
    data_dir = PurePosixPath(_flag(container["args"], "--data-dir"))
    claims = {t["metadata"]["name"] for t in index["spec"]["volumeClaimTemplates"]}
    [mount] = [m for m in container["volumeMounts"] if data_dir.is_relative_to(m["mountPath"])]
    assert mount["name"] in claims
    [compose_volume] = _compose()["index"]["volumes"]
    assert compose_volume.split(":")[1] == mount["mountPath"]
    services = {s["metadata"]["name"]: s for s in _k8s_of_kind("Service")}
    assert services[index["spec"]["serviceName"]]["spec"]["clusterIP"] == "None"


def test_pods_run_as_the_image_user() -> None:
    dockerfile = DOCKERFILE.read_text()
    match = re.search(r"useradd .*--uid (\d+) (\S+)", dockerfile)
    assert match and f"\nUSER {match.group(2)}\n" in dockerfile
    for workload in _workloads().values():
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == int(match.group(1))
        assert _container(workload)["securityContext"]["allowPrivilegeEscalation"] is False


def test_no_pod_gets_service_link_variables() -> None:
    """A Service named clipsearch-encoder would inject CLIPSEARCH_ENCODER_PORT=tcp://IP:50051,
    which the CLI parses as the --port flag's default and refuses (exit 2, even `clipsearch health`)."""
    for name, pod in _pod_specs():
        assert pod.get("enableServiceLinks") is False, name


# --- (b) the RayService, checked by hand --------------------------------------------------------


def test_rayservice_has_the_shape_kuberay_needs() -> None:
    service = _rayservice()
    assert (service["apiVersion"], service["kind"]) == ("ray.io/v1", "RayService")
    assert service["metadata"]["name"]
    spec = service["spec"]
    assert isinstance(spec["serveConfigV2"], str)  # KubeRay wants the Serve config as one string
    assert isinstance(yaml.safe_load(spec["serveConfigV2"]), dict)
    # Each copy's ReadWriteOnce volume has one writer: no second cluster during upgrades.
    assert spec["upgradeStrategy"]["type"] == "None"
    cluster = spec["rayClusterConfig"]
    assert cluster["rayVersion"] == _dockerfile_arg(RAY / "Dockerfile", "RAY_VERSION")
    assert "headGroupSpec" in cluster and cluster["workerGroupSpecs"]
    images = set()
    for group in _ray_groups():
        params = group["rayStartParams"]
        assert all(isinstance(v, str) for v in params.values()), params  # map[string]string
        containers = group["template"]["spec"]["containers"]
        assert containers and all(c["name"] and c["image"] for c in containers)
        images |= {c["image"] for c in containers}
    assert len(images) == 1  # every node imports the same code
    workers = cluster["workerGroupSpecs"]
    assert len({g["groupName"] for g in workers}) == len(workers)
    for group in workers:
        assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"], group["groupName"]


def test_serve_config_v2_is_the_standalone_serve_config() -> None:
    assert yaml.safe_load(_rayservice()["spec"]["serveConfigV2"]) == _serve_config()


def test_cluster_service_reaches_the_only_proxy() -> None:
    config = _serve_config()
    assert config["proxy_location"] == "HeadOnly"  # as `clipsearch cluster up` starts Serve
    [service] = _load_all(RAY / "service.yaml")
    [port] = service["spec"]["ports"]
    assert port["targetPort"] == config["grpc_options"]["port"]
    head = _ray_groups()[0]["template"]
    selector = dict(service["spec"]["selector"])
    assert selector.pop("ray.io/node-type") == "head"  # the label KubeRay puts on the head pod
    assert selector.items() <= head["metadata"]["labels"].items()
    assert port["targetPort"] in [p["containerPort"] for p in head["spec"]["containers"][0]["ports"]]


# --- (c) the Serve config builds the real application --------------------------------------------


def test_serve_config_builds_a_valid_cluster_config() -> None:
    pytest.importorskip("ray")
    from ray.serve.schema import ServeDeploySchema

    from clipsearch.cluster import app
    from encoder_service.settings import EncoderSettings

    ServeDeploySchema.model_validate(_serve_config())
    application = _application()
    assert application["name"] == app.APP_NAME
    module, _, attribute = application["import_path"].partition(":")
    builder = getattr(importlib.import_module(module), attribute)
    assert callable(builder) and builder is app.app_builder
    config = app.ClusterConfig.from_dict(application["args"])  # unknown or bad fields raise
    EncoderSettings(**config.encoder)
    assert builder(application["args"]) is not None  # builds the deployment graph, no cluster needed


def test_worker_groups_offer_what_the_copies_ask_for() -> None:
    pytest.importorskip("ray")
    from clipsearch.cluster.app import ClusterConfig

    config = ClusterConfig.from_dict(_application()["args"])
    groups = _ray_groups()
    claims = {d["metadata"]["name"] for d in _load_all(RAY / "volumes.yaml")}
    used = []
    for copy_number in range(config.copies):
        needed = {name for g in range(config.groups) for name in config.resources(g, copy_number)}
        assert needed, "copies placed anywhere would share no volume rule"
        holders = [g for g in groups if needed <= _custom_resources(g).keys()]
        assert len(holders) == 1, (copy_number, needed)
        [holder] = holders
        assert holder["replicas"] == holder["minReplicas"] == holder["maxReplicas"] == 1, needed
        pod = holder["template"]["spec"]
        [mount] = [
            m
            for m in pod["containers"][0]["volumeMounts"]
            if PurePosixPath(config.data_root).is_relative_to(m["mountPath"])
        ]
        [volume] = [v for v in pod["volumes"] if v["name"] == mount["name"]]
        used.append(volume["persistentVolumeClaim"]["claimName"])
    assert len(set(used)) == len(used) and set(used) <= claims  # a volume of its own per copy
    encoder_cpus = sum(_ray_cpus(g) * g.get("replicas", 1) for g in groups)
    assert encoder_cpus >= config.encoder_max_replicas * config.encoder_cpus


# --- (e) the proxy serves what `clipsearch cluster up` gives it ---------------------------------


def test_grpc_servicer_functions_are_the_clusters() -> None:
    pytest.importorskip("torch")  # grpc_services imports the encoder's servicer
    from clipsearch.cluster.grpc_services import SERVICER_FUNCTIONS

    assert _serve_config()["grpc_options"]["grpc_servicer_functions"] == list(SERVICER_FUNCTIONS)
