"""The Helm chart deploy/k8s/plasma, rendered and checked offline in seconds, without a cluster.

Rendering: Helm's own template engine through helm-python-sdk (a wheel that carries the Helm v4 Go SDK: no helm
binary, no network), or the `helm` CLI where only that is installed. The engine also checks the values against the
chart's values.schema.json, so a misspelt key fails the render; `helm lint` must find no warning.

Validation: every rendered object against the Kubernetes OpenAPI JSON schemas that kubernetes-validate ships,
strict (an unknown field is an error), for the oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and
the newest the package knows. The RayCluster is a custom resource with no schema there: its pod templates are
validated as core PodTemplates instead.

Then what the schemas cannot see: gRPC probes on each service's own port, resources, non-root and read-only
containers, a claim per store mounted where PLASMA_*_STORE points, the signing key mounted into the compiler only,
Services that select their workload, environment variables the code actually reads, edges that follow a
registry channel only when asked, under an id that survives a restart, and a simulator that runs its batches on the
optional RayCluster (ray.enabled): PLASMA_RAY_ADDRESS names the head Service KubeRay makes, and the Ray nodes run the
simulator's image.

Run: python -m pytest tests/deploy -q. Without a renderer or kubernetes-validate (the dev extra) the tests skip,
except under CI (CI set), where they fail.
"""

from __future__ import annotations

import base64
import functools
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "k8s" / "plasma"
EXAMPLES = ROOT / "deploy" / "k8s" / "examples"
RELEASE, NAMESPACE = "plasma", "plasma"
UID = 10001
# The services and where their images keep the store (deploy/services/Dockerfile, deploy/edge/Dockerfile).
SERVICES = ("simulator", "trainer", "compiler", "edge", "registry")
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet")
# Modules that read PLASMA_* variables: every one the manifests set must appear in one of them.
CONFIG_SOURCES = (
    "services/simulator/config.py",
    "services/trainer/config.py",
    "services/compiler/config.py",
    "edge_runtime/config.py",
    "edge_runtime/follower.py",
    "services/registry/config.py",
    "plasma/log.py",
)

Obj = dict[str, Any]


class RenderError(Exception):
    """The chart refused the values (schema or a `fail` in a template)."""


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI must run these tests: install the dev extra)")
    pytest.skip(reason)


@functools.cache
def _renderer() -> tuple[Callable[[Obj], dict[str, str]] | None, str]:
    try:
        import helm_python
    except ImportError:
        helm_python = None
    if helm_python is not None:

        def render_sdk(values: Obj) -> dict[str, str]:
            try:
                with helm_python.Chart.load(str(CHART)) as chart:
                    return chart.render(values, name=RELEASE, namespace=NAMESPACE)
            except helm_python.HelmError as exc:
                raise RenderError(str(exc)) from exc

        return render_sdk, f"helm-python-sdk (Helm SDK {helm_python.helm_sdk_version()})"
    helm = shutil.which("helm")
    if helm is not None:

        def render_cli(values: Obj) -> dict[str, str]:
            with tempfile.NamedTemporaryFile("w", suffix=".json") as handle:
                json.dump(values, handle)
                handle.flush()
                done = subprocess.run(
                    [helm, "template", RELEASE, str(CHART), "--namespace", NAMESPACE, "--values", handle.name],
                    capture_output=True, text=True, timeout=60, check=False,
                )
            if done.returncode != 0:
                raise RenderError(done.stderr)
            return {"helm-template.yaml": done.stdout}

        return render_cli, f"helm CLI {helm}"
    return None, "no Helm renderer: install the dev extra (helm-python-sdk) or put helm on PATH"


def render_raw(values: Obj) -> dict[str, str]:
    render, reason = _renderer()
    if render is None:
        _unavailable(reason)
    assert render is not None
    return render(values)


@functools.cache
def _render_cached(values_json: str) -> tuple[Obj, ...]:
    manifests = render_raw(json.loads(values_json))
    objects = []
    for name, text in sorted(manifests.items()):
        if not name.endswith((".yaml", ".yml")):
            continue  # NOTES.txt
        objects.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return tuple(objects)


def render(values: Obj) -> list[Obj]:
    """The chart's objects for these values (a fresh copy: tests may change them)."""
    return json.loads(json.dumps(_render_cached(json.dumps(values, sort_keys=True))))


def example(name: str) -> Obj:
    return yaml.safe_load((EXAMPLES / name).read_text())


# The value sets every object check runs on.
EVERYTHING: Obj = {
    "image": {"registry": "registry.example.com/team", "tag": "1.2.3", "pullPolicy": "Always"},
    "imagePullSecrets": ["regcred"],
    "podAnnotations": {"example.com/owner": "plasma"},
    "storageClassName": "standard",
    "listenHost": "[::]",
    "logLevel": "DEBUG",
    "signing": {"create": True, "privateKeyPem": "-----BEGIN PRIVATE KEY-----\nMC4CAQAw\n-----END PRIVATE KEY-----\n",
                "publicKey": "9Wq0U0aHc8tSb0m2lUfW0i9s1H3xw1c1i9kqB0Zr7LQ=\n"},
    "simulator": {"replicas": 3, "multiReplica": {"enabled": True, "sharedStore": {"storageClassName": "nfs"}},
                  "env": {"PLASMA_SIMULATOR_MAX_SIMULATIONS": 8, "PLASMA_SIMULATOR_WORKERS": "16"}},
    "trainer": {"env": {"PLASMA_TRAINER_SIMULATE_DEADLINE_SECONDS": "3600"}},
    "compiler": {"store": {"existingClaim": "my-packets"}},
    "edge": {"image": {"repository": "plasma/edge", "tag": "edge-9"}, "env": {"PLASMA_EDGE_MAX_BATCH": "64"},
             "daemonset": {"enabled": True}, "follow": {"channel": "stable", "edgeId": "cluster-edge"}},
    "registry": {"workers": 128, "evaluateSeconds": 0.5, "env": {"PLASMA_REGISTRY_GRACE_SECONDS": "3"},
                 "store": {"size": "2Gi", "storageClassName": "fast"}, "service": {"annotations": {"a": "b"}},
                 "nodeSelector": {"kubernetes.io/os": "linux"}},
    "ray": {"enabled": True},
}
SCENARIOS: dict[str, Obj] = {
    "defaults": {},
    "everything": EVERYTHING,
    "no-edge-deployment": {"edge": {"deployment": {"enabled": False}, "metrics": {"enabled": False}}},
    "no-registry": {"registry": {"enabled": False}},
    "registry-elsewhere": {"registry": {"enabled": False}, "edge": {"daemonset": {"enabled": True}, "follow": {
        "channel": "stable", "registryTarget": "registry.fleet.example.com:50055"}}},
    **{f"examples/{path.name}": yaml.safe_load(path.read_text()) for path in sorted(EXAMPLES.glob("*.yaml"))},
}


@pytest.fixture(scope="module")
def validator() -> Iterator[Callable[[Obj, str], None]]:
    try:
        import kubernetes_validate
    except ImportError:
        _unavailable("kubernetes-validate is not installed (dev extra)")

    def validate(obj: Obj, version: str) -> None:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:  # its str() holds the whole schema: keep the point
            where = "/".join(str(part) for part in exc.path)
            raise AssertionError(
                f"{obj['kind']} {obj['metadata']['name']} is not valid Kubernetes {version}: {exc.message} at {where}"
            ) from None

    yield validate


def kubernetes_versions() -> tuple[str, str]:
    """The oldest version Chart.yaml accepts and the newest kubernetes-validate has schemas for."""
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    oldest = re.fullmatch(r">=\s*(\d+\.\d+)(\.\d+)?(-0)?", chart["kubeVersion"])
    assert oldest, chart["kubeVersion"]
    try:
        import kubernetes_validate
    except ImportError:
        return oldest.group(1), oldest.group(1)
    newest = ".".join(kubernetes_validate.latest_version().split(".")[:2])
    return oldest.group(1), newest


# Helpers over rendered objects


def of_kind(objects: list[Obj], *kinds: str) -> list[Obj]:
    return [obj for obj in objects if obj["kind"] in kinds]


def named(objects: list[Obj], kind: str, name: str) -> Obj:
    found = [obj for obj in objects if obj["kind"] == kind and obj["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, got {[o['metadata']['name'] for o in of_kind(objects, kind)]}"
    return found[0]


def pod_spec(workload: Obj) -> Obj:
    return workload["spec"]["template"]["spec"]


def component(obj: Obj) -> str:
    return obj["metadata"]["labels"]["app.kubernetes.io/component"]


def workload_of(objects: list[Obj], name: str) -> Obj:
    found = [w for w in of_kind(objects, *WORKLOAD_KINDS) if component(w) == name]
    assert len(found) == 1, f"expected one workload for {name}, got {len(found)}"
    return found[0]


# The one variable that may come from the downward API: a device pod's edge id is its node's name.
FROM_FIELDS = {"PLASMA_EDGE_ID": "spec.nodeName"}


def env_of(container: Obj) -> dict[str, str]:
    """Name -> value; a variable from a pod field reads "fieldRef:<path>"."""
    values = {}
    for item in container.get("env", []):
        assert item["name"] not in values, f"{container['name']}: {item['name']} set twice"
        if "valueFrom" in item:
            field = item["valueFrom"]["fieldRef"]["fieldPath"]
            assert FROM_FIELDS.get(item["name"]) == field, f"{container['name']}: {item['name']} from {field}"
            values[item["name"]] = f"fieldRef:{field}"
            continue
        assert "value" in item, f"{container['name']}: {item['name']} must be a plain value"
        values[item["name"]] = item["value"]
    return values


def port_of(address: str) -> int:
    return int(address.rpartition(":")[2])


def plasma_workloads(objects: list[Obj]) -> list[Obj]:
    return [w for w in of_kind(objects, *WORKLOAD_KINDS) if component(w) != "ray"]


def volume(spec: Obj, name: str) -> Obj:
    found = [v for v in spec.get("volumes", []) if v["name"] == name]
    assert len(found) == 1, f"volume {name}: {spec.get('volumes')}"
    return found[0]


def mount(container: Obj, name: str, path: str | None = None) -> Obj:
    found = [m for m in container.get("volumeMounts", [])
             if m["name"] == name and (path is None or m["mountPath"] == path)]
    assert len(found) == 1, f"{container['name']}: mount of {name} at {path}: {container.get('volumeMounts')}"
    return found[0]


def ray_pod_templates(objects: list[Obj]) -> Iterator[Obj]:
    for cluster in of_kind(objects, "RayCluster"):
        yield cluster["spec"]["headGroupSpec"]["template"]
        for group in cluster["spec"]["workerGroupSpecs"]:
            yield group["template"]


# Tests


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_every_object_is_valid_kubernetes(scenario: str, validator: Callable[[Obj, str], None]) -> None:
    objects = render(SCENARIOS[scenario])
    assert objects, "nothing rendered"
    seen = set()
    for obj in objects:
        key = (obj["kind"], obj["metadata"]["name"])
        assert key not in seen, f"{key} rendered twice"
        seen.add(key)
        assert len(obj["metadata"]["name"]) <= 63, obj["metadata"]["name"]
        assert obj["metadata"]["labels"]["app.kubernetes.io/part-of"] == "plasma"
        for version in kubernetes_versions():
            if obj["kind"] == "RayCluster":
                assert obj["apiVersion"] == "ray.io/v1"
                continue  # a custom resource: its pod templates are checked below
            validator(obj, version)
    # No RayCluster schema offline: each pod template must at least be a valid core PodTemplate.
    for index, template in enumerate(ray_pod_templates(objects)):
        wrapped = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": f"ray-{index}"},
                   "template": template}
        for version in kubernetes_versions():
            validator(wrapped, version)


def test_defaults_are_the_five_services_with_their_stores() -> None:
    objects = render({})
    assert sorted((o["kind"], o["metadata"]["name"]) for o in objects) == sorted(
        [("Deployment", f"plasma-{s}") for s in SERVICES]
        + [("Service", f"plasma-{s}") for s in SERVICES]
        + [("PersistentVolumeClaim", f"plasma-{s}-store") for s in SERVICES]
    )


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_grpc_probes_on_each_service_port(scenario: str) -> None:
    objects = render(SCENARIOS[scenario])
    for workload in plasma_workloads(objects):
        spec = pod_spec(workload)
        assert len(spec["containers"]) == 1
        container = spec["containers"][0]
        grpc_ports = [p["containerPort"] for p in container["ports"] if p["name"] == "grpc"]
        assert len(grpc_ports) == 1
        port = grpc_ports[0]
        address = env_of(container)[f"PLASMA_{container['name'].upper()}_ADDRESS"]
        assert port_of(address) == port, f"{container['name']} listens on {address}, port {port} declared"
        for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
            probe = container[kind]
            assert set(probe) & {"grpc", "exec", "httpGet", "tcpSocket"} == {"grpc"}, f"{container['name']} {kind}"
            assert probe["grpc"] == {"port": port}, f"{container['name']} {kind}: {probe['grpc']}"
        # Longer than the server's own drain (PLASMA_*_GRACE_SECONDS: 10 s, edge and registry 5 s), so SIGTERM
        # ends it.
        assert spec["terminationGracePeriodSeconds"] > (5 if container["name"] in ("edge", "registry") else 10)


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_every_container_has_requests_and_limits(scenario: str) -> None:
    objects = render(SCENARIOS[scenario])
    specs = [pod_spec(w) for w in of_kind(objects, *WORKLOAD_KINDS)] + [t["spec"] for t in ray_pod_templates(objects)]
    assert specs
    for spec in specs:
        for container in spec["containers"]:
            resources = container["resources"]
            assert {"cpu", "memory"} <= set(resources["requests"]), container["name"]
            assert {"cpu", "memory"} <= set(resources["limits"]), container["name"]


def test_torch_services_run_one_thread() -> None:
    objects = render({})
    for name in ("simulator", "trainer", "compiler"):
        env = env_of(pod_spec(workload_of(objects, name))["containers"][0])
        assert env[f"PLASMA_{name.upper()}_TORCH_THREADS"] == "1"
    assert env_of(pod_spec(workload_of(objects, "edge"))["containers"][0])["PLASMA_EDGE_ORT_INTRA_THREADS"] == "1"


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_pods_run_as_non_root_with_read_only_roots(scenario: str) -> None:
    objects = render(SCENARIOS[scenario])
    for workload in plasma_workloads(objects):
        spec = pod_spec(workload)
        assert spec["automountServiceAccountToken"] is False
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True
        assert (pod["runAsUser"], pod["runAsGroup"], pod["fsGroup"]) == (UID, UID, UID)
        assert pod["seccompProfile"] == {"type": "RuntimeDefault"}
        assert "hostNetwork" not in spec and "hostPID" not in spec
        for container in spec["containers"]:
            security = container["securityContext"]
            assert security["runAsNonRoot"] is True
            assert security["allowPrivilegeEscalation"] is False
            assert security["readOnlyRootFilesystem"] is True
            assert security["capabilities"] == {"drop": ["ALL"]}
            assert security.get("privileged") is not True
            # The one writable place besides the store: /tmp, an emptyDir (temporary bundle and adapter files).
            assert "emptyDir" in volume(spec, mount(container, "tmp", "/tmp")["name"])
    for template in ray_pod_templates(objects):
        pod = template["spec"]["securityContext"]
        assert pod["runAsNonRoot"] is True
        # The simulator image's user: the Ray nodes run that image.
        assert (pod["runAsUser"], pod["runAsGroup"]) == (UID, UID)
        assert template["spec"]["automountServiceAccountToken"] is False
        for container in template["spec"]["containers"]:
            assert container["securityContext"]["runAsNonRoot"] is True
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
            assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}


def test_each_store_is_a_claim_mounted_where_the_service_looks() -> None:
    objects = render({})
    claims = {c["metadata"]["name"]: c for c in of_kind(objects, "PersistentVolumeClaim")}
    for name in SERVICES:
        workload = workload_of(objects, name)
        assert workload["kind"] == "Deployment"
        # Two pods must never open one store: the old pod goes before the new one starts.
        assert workload["spec"]["strategy"] == {"type": "Recreate"}
        assert workload["spec"]["replicas"] == 1
        spec = pod_spec(workload)
        container = spec["containers"][0]
        store = env_of(container)[f"PLASMA_{name.upper()}_STORE"]
        assert store == f"/var/lib/plasma/{name}"
        claim_name = volume(spec, mount(container, "store", store)["name"])["persistentVolumeClaim"]["claimName"]
        claim = claims[claim_name]
        assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
        assert claim["spec"]["resources"]["requests"]["storage"]
        assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"


def test_an_existing_claim_replaces_the_charts() -> None:
    objects = render({"compiler": {"store": {"existingClaim": "my-packets"}}})
    assert "plasma-compiler-store" not in {c["metadata"]["name"] for c in of_kind(objects, "PersistentVolumeClaim")}
    spec = pod_spec(workload_of(objects, "compiler"))
    assert volume(spec, "store")["persistentVolumeClaim"]["claimName"] == "my-packets"


@pytest.mark.parametrize("scenario", ["defaults", "everything"])
def test_signing_key_in_the_compiler_only_trusted_keys_in_the_edge(scenario: str) -> None:
    values = SCENARIOS[scenario]
    objects = render(values)
    compiler = pod_spec(workload_of(objects, "compiler"))
    container = compiler["containers"][0]
    key_path = Path(env_of(container)["PLASMA_COMPILER_SIGNING_KEY"])
    key_mount = mount(container, "signing-key", str(key_path.parent))
    assert key_mount["readOnly"] is True
    secret = volume(compiler, key_mount["name"])["secret"]
    assert secret["secretName"] == "plasma-signing-key"
    assert secret["items"] == [{"key": "ed25519.pem", "path": key_path.name}]
    assert secret["defaultMode"] & 0o007 == 0, "the private key must not be world-readable"

    for workload in plasma_workloads(objects):
        spec = pod_spec(workload)
        secrets = {v["secret"]["secretName"] for v in spec.get("volumes", []) if "secret" in v}
        if component(workload) == "compiler":
            assert secrets == {"plasma-signing-key"}
        elif component(workload) in ("edge", "edge-device"):
            assert secrets == {"plasma-trusted-keys"}
            edge = spec["containers"][0]
            trusted = env_of(edge)["PLASMA_EDGE_TRUSTED_KEYS"].split(",")
            keys_mount = mount(edge, "trusted-keys")
            assert keys_mount["readOnly"] is True
            items = volume(spec, "trusted-keys")["secret"]["items"]
            assert [f"{keys_mount['mountPath']}/{item['path']}" for item in items] == trusted
        else:
            assert not secrets, f"{component(workload)} mounts {secrets}"

    rendered_secrets = {s["metadata"]["name"]: s for s in of_kind(objects, "Secret")}
    if values.get("signing", {}).get("create"):
        private = base64.b64decode(rendered_secrets["plasma-signing-key"]["data"]["ed25519.pem"]).decode()
        assert private == values["signing"]["privateKeyPem"]
        public = base64.b64decode(rendered_secrets["plasma-trusted-keys"]["data"]["compiler.pub"]).decode()
        assert public == values["signing"]["publicKey"].strip()
    else:
        assert not rendered_secrets, "by default the Secrets are made with kubectl, not by the chart"


def test_several_trusted_keys_for_rotation() -> None:
    objects = render({"signing": {"trustedKeyFiles": ["compiler.pub", "next.pub"]}})
    edge = pod_spec(workload_of(objects, "edge"))["containers"][0]
    assert env_of(edge)["PLASMA_EDGE_TRUSTED_KEYS"] == "/run/plasma/trusted/compiler.pub,/run/plasma/trusted/next.pub"


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_services_select_their_workload_and_targets_resolve(scenario: str) -> None:
    objects = render(SCENARIOS[scenario])
    services = {s["metadata"]["name"]: s for s in of_kind(objects, "Service")}
    workloads = of_kind(objects, *WORKLOAD_KINDS)
    for service in services.values():
        selector = service["spec"]["selector"]
        selected = [w for w in workloads
                    if selector.items() <= w["spec"]["template"]["metadata"]["labels"].items()]
        assert len(selected) == 1, f"Service {service['metadata']['name']} selects {len(selected)} workloads"
        assert selector.items() <= selected[0]["spec"]["selector"]["matchLabels"].items()
        container_ports = {p["name"] for c in pod_spec(selected[0])["containers"] for p in c["ports"]}
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in container_ports, f"{service['metadata']['name']}: {port}"
    # Where the trainer and the compiler find the services they call.
    calls = {"trainer": {"PLASMA_SIMULATOR_TARGET": "simulator"},
             "compiler": {"PLASMA_TRAINER_TARGET": "trainer", "PLASMA_SIMULATOR_TARGET": "simulator"},
             "registry": {"PLASMA_COMPILER_TARGET": "compiler"},
             "edge": {"PLASMA_EDGE_REGISTRY_TARGET": "registry"},
             "edge-device": {"PLASMA_EDGE_REGISTRY_TARGET": "registry"}}
    present = {component(w) for w in plasma_workloads(objects)}
    for caller, targets in calls.items():
        if caller not in present:
            continue
        env = env_of(pod_spec(workload_of(objects, caller))["containers"][0])
        targets = {variable: callee for variable, callee in targets.items()
                   if variable in env and not env[variable].startswith("registry.fleet.example.com:")}
        for variable, callee in targets.items():
            host, _, port = env[variable].rpartition(":")
            service = services[host]
            assert component(service) == callee
            assert int(port) in [p["port"] for p in service["spec"]["ports"]]


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_environment_variables_are_read_by_the_code(scenario: str) -> None:
    known = set()
    for source in CONFIG_SOURCES:
        known |= set(re.findall(r"PLASMA_[A-Z0-9_]+", (ROOT / source).read_text()))
    for workload in plasma_workloads(render(SCENARIOS[scenario])):
        # Service links would add PLASMA_SIMULATOR_PORT=tcp://... and the like (Services are named plasma-*),
        # variables in the services' own namespace.
        assert pod_spec(workload)["enableServiceLinks"] is False
        for name in env_of(pod_spec(workload)["containers"][0]):
            assert name in known, f"{component(workload)}: {name} is read by none of {CONFIG_SOURCES}"


def test_image_names_and_tags_are_configurable() -> None:
    objects = render(EVERYTHING)
    images = {component(w): pod_spec(w)["containers"][0]["image"] for w in plasma_workloads(objects)}
    assert images == {
        "simulator": "registry.example.com/team/plasma/simulator:1.2.3",
        "trainer": "registry.example.com/team/plasma/trainer:1.2.3",
        "compiler": "registry.example.com/team/plasma/compiler:1.2.3",
        "edge": "registry.example.com/team/plasma/edge:edge-9",
        "edge-device": "registry.example.com/team/plasma/edge:edge-9",
        "registry": "registry.example.com/team/plasma/registry:1.2.3",
    }
    for workload in plasma_workloads(objects):
        assert pod_spec(workload)["imagePullSecrets"] == [{"name": "regcred"}]
        assert pod_spec(workload)["containers"][0]["imagePullPolicy"] == "Always"
    assert pod_spec(workload_of(render({}), "simulator"))["containers"][0]["image"] == "plasma/simulator:latest"


def test_simulator_replicas_experimental_layout() -> None:
    objects = render(EVERYTHING)
    simulator = workload_of(objects, "simulator")
    assert simulator["kind"] == "StatefulSet"
    assert simulator["spec"]["replicas"] == 3
    headless = named(objects, "Service", simulator["spec"]["serviceName"])
    assert headless["spec"]["clusterIP"] == "None"
    service = named(objects, "Service", "plasma-simulator")
    # A job lives on the replica that runs it: a client's connections must keep reaching that replica.
    assert service["spec"]["sessionAffinity"] == "ClientIP"
    shared_claim = named(objects, "PersistentVolumeClaim", "plasma-simulator-shared")
    assert shared_claim["spec"]["accessModes"] == ["ReadWriteMany"]
    assert shared_claim["spec"]["storageClassName"] == "nfs"
    spec = pod_spec(simulator)
    container = spec["containers"][0]
    store = env_of(container)["PLASMA_SIMULATOR_STORE"]
    assert volume(spec, "shared")["persistentVolumeClaim"]["claimName"] == "plasma-simulator-shared"
    # Datasets and models shared; simulations/ (job logs) and staging/ (uploads) on the replica's own claim.
    for directory in ("datasets", "models"):
        assert mount(container, "shared", f"{store}/{directory}")["subPath"] == directory
    mount(container, "store", store)
    (template,) = simulator["spec"]["volumeClaimTemplates"]
    assert template["metadata"]["name"] == "store"
    assert template["spec"]["accessModes"] == ["ReadWriteOnce"]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"simulator": {"replicas": 2}}, "multiReplica"),
        ({"simulator": {"replicas": 2, "multiReplica": {"enabled": True}, "store": {"existingClaim": "x"}}},
         "existingClaim"),
        ({"simulatr": {"replicas": 2}}, "simulatr"),
        ({"simulator": {"replicas": 0}}, "replicas"),
        ({"logLevel": "LOUD"}, "logLevel"),
        ({"signing": {"create": True}}, "privateKeyPem"),
        ({"registry": {"workers": 0}}, "workers"),
        ({"registry": {"evaluateSeconds": 0}}, "evaluateSeconds"),
        ({"registry": {"replicas": 2}}, "replicas"),
        ({"edge": {"follow": {"channel": "not a channel"}}}, "channel"),
        ({"edge": {"follow": {"channel": "stable", "edgeId": "edge."}}}, "edgeId"),
        ({"edge": {"follow": {"chanel": "stable"}}}, "chanel"),
        ({"registry": {"enabled": False}, "edge": {"follow": {"channel": "stable"}}}, "registryTarget"),
        # The simulator's Ray batches run on the workers' CPUs (services/simulator/config.py refuses the pair too).
        ({"ray": {"enabled": True}, "simulator": {"env": {"PLASMA_SIMULATOR_DEVICE": "cuda"}}},
         "ray.enabled .* cannot be combined with simulator.env.PLASMA_SIMULATOR_DEVICE=cuda"),
        ({"ray": {"enabled": True}, "simulator": {"env": {"PLASMA_SIMULATOR_DEVICE": "auto"}}},
         "PLASMA_SIMULATOR_DEVICE=auto"),
        ({"ray": {"enabled": True}, "simulator": {"env": {"PLASMA_RAY_ADDRESS": "ray://elsewhere:10001"}}},
         "simulator.env.PLASMA_RAY_ADDRESS"),
        ({"ray": {"enabled": True}, "simulator": {"env": {"PLASMA_SIMULATOR_BATCH_PATHS": "32"}}},
         "simulator.env.PLASMA_SIMULATOR_BATCH_PATHS"),
        # KubeRay would cut a head Service name over 50 characters: the address would name no Service.
        ({"ray": {"enabled": True}, "fullnameOverride": "a-release-name-that-is-long-enough-to-cut"},
         "head Service name"),
        ({"ray": {"enabled": True, "workers": {"replicas": 5, "maxReplicas": 4}}}, "maxReplicas"),
        ({"ray": {"enabled": True, "workers": {"replicas": 0}}}, "replicas"),
        ({"ray": {"enabled": True, "image": "rayproject/ray:2.60.0"}}, "image"),
    ],
)
def test_the_chart_refuses_bad_values(values: Obj, message: str) -> None:
    with pytest.raises(RenderError, match=message):
        render_raw(values)


def test_edge_daemonset_on_labelled_nodes() -> None:
    values = example("edge-devices.yaml")
    objects = render(values)
    daemonset = named(objects, "DaemonSet", "plasma-edge-device")
    spec = pod_spec(daemonset)
    assert spec["nodeSelector"] == {"plasma.dev/edge-device": "true"}
    assert spec["tolerations"] == values["edge"]["daemonset"]["tolerations"]
    container = spec["containers"][0]
    store = volume(spec, mount(container, "store", env_of(container)["PLASMA_EDGE_STORE"])["name"])
    assert store["hostPath"] == {"path": "/var/lib/plasma/edge", "type": "Directory"}
    service = named(objects, "Service", "plasma-edge-device")
    assert service["spec"]["internalTrafficPolicy"] == "Local"
    # The Deployment stays, and its Service does not reach the device pods (nor the reverse).
    assert named(objects, "Service", "plasma-edge")["spec"]["selector"]["app.kubernetes.io/component"] == "edge"
    assert not of_kind(render({}), "DaemonSet")
    # Labels given replace the default one (not merged with it).
    custom = render({"edge": {"daemonset": {"enabled": True, "nodeSelector": {"example.com/device": "robot"}}}})
    selector = pod_spec(named(custom, "DaemonSet", "plasma-edge-device"))["nodeSelector"]
    assert selector == {"example.com/device": "robot"}
    default = render({"edge": {"daemonset": {"enabled": True}}})
    selector = pod_spec(named(default, "DaemonSet", "plasma-edge-device"))["nodeSelector"]
    assert selector == {"plasma.dev/edge-device": "true"}
    without_host_path = render({"edge": {"daemonset": {"enabled": True, "hostPath": ""}}})
    assert "emptyDir" in volume(pod_spec(named(without_host_path, "DaemonSet", "plasma-edge-device")), "store")


def test_registry_is_one_recreated_pod_on_its_claim() -> None:
    objects = render(EVERYTHING)
    registry = named(objects, "Deployment", "plasma-registry")
    # Its state is one JSON document on its claim: one writer, never two pods at once.
    assert registry["spec"]["replicas"] == 1
    assert registry["spec"]["strategy"] == {"type": "Recreate"}
    spec = pod_spec(registry)
    (container,) = spec["containers"]
    env = env_of(container)
    assert env["PLASMA_REGISTRY_ADDRESS"] == "[::]:50055"
    assert env["PLASMA_REGISTRY_WORKERS"] == "128"
    assert env["PLASMA_REGISTRY_EVALUATE_SECONDS"] == "0.5"
    assert env["PLASMA_REGISTRY_GRACE_SECONDS"] == "3"
    assert env["PLASMA_COMPILER_TARGET"] == "plasma-compiler:50053"
    for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[kind]["grpc"] == {"port": 50055}
    # A small torch-free process: far below the torch services' requests.
    assert container["resources"] == {"requests": {"cpu": "100m", "memory": "128Mi"},
                                      "limits": {"cpu": "1", "memory": "256Mi"}}
    claim = named(objects, "PersistentVolumeClaim", "plasma-registry-store")
    assert volume(spec, mount(container, "store", env["PLASMA_REGISTRY_STORE"])["name"]) == {
        "name": "store", "persistentVolumeClaim": {"claimName": "plasma-registry-store"}}
    assert claim["spec"]["resources"]["requests"]["storage"] == "2Gi"
    assert claim["spec"]["storageClassName"] == "fast"
    assert spec["nodeSelector"] == {"kubernetes.io/os": "linux"}
    # No key material: it serves packets the compiler signed; the edges verify them.
    assert not [v for v in spec["volumes"] if "secret" in v]
    defaults = pod_spec(named(render({}), "Deployment", "plasma-registry"))["containers"][0]
    assert env_of(defaults)["PLASMA_REGISTRY_WORKERS"] == "64"
    assert env_of(defaults)["PLASMA_REGISTRY_EVALUATE_SECONDS"] == "1"
    assert defaults["image"] == "plasma/registry:latest"


def test_registry_can_be_left_out() -> None:
    objects = render({"registry": {"enabled": False}})
    assert not [o for o in objects if component(o) == "registry"]
    existing = render({"registry": {"store": {"existingClaim": "my-fleet"}}})
    assert "plasma-registry-store" not in {c["metadata"]["name"] for c in of_kind(existing, "PersistentVolumeClaim")}
    assert volume(pod_spec(workload_of(existing, "registry")), "store")["persistentVolumeClaim"] == {
        "claimName": "my-fleet"}


FOLLOW_VARIABLES = {"PLASMA_EDGE_REGISTRY_TARGET", "PLASMA_EDGE_CHANNEL", "PLASMA_EDGE_ID"}


def edge_envs(objects: list[Obj]) -> dict[str, dict[str, str]]:
    return {component(w): env_of(pod_spec(w)["containers"][0]) for w in plasma_workloads(objects)
            if component(w) in ("edge", "edge-device")}


def test_edges_follow_a_channel_only_when_asked() -> None:
    both = {"edge": {"daemonset": {"enabled": True}}}
    for env in edge_envs(render(both)).values():
        assert not FOLLOW_VARIABLES & set(env), "an edge follows no channel unless edge.follow.channel is set"

    envs = edge_envs(render({"edge": {"daemonset": {"enabled": True}, "follow": {"channel": "stable"}}}))
    assert set(envs) == {"edge", "edge-device"}
    for env in envs.values():
        assert env["PLASMA_EDGE_REGISTRY_TARGET"] == "plasma-registry:50055"
        assert env["PLASMA_EDGE_CHANNEL"] == "stable"
    # Ids that survive a restart (a canary back under a new id would be "not heard from" and roll back): the
    # Deployment's name for its one pod, the node's name for each device pod.
    assert envs["edge"]["PLASMA_EDGE_ID"] == "plasma-edge"
    assert envs["edge-device"]["PLASMA_EDGE_ID"] == "fieldRef:spec.nodeName"

    envs = edge_envs(render(EVERYTHING))
    assert envs["edge"]["PLASMA_EDGE_ID"] == "cluster-edge"
    assert envs["edge-device"]["PLASMA_EDGE_ID"] == "fieldRef:spec.nodeName"

    # Another registry (this release's turned off): the edges follow the one named.
    envs = edge_envs(render(SCENARIOS["registry-elsewhere"]))
    assert {env["PLASMA_EDGE_REGISTRY_TARGET"] for env in envs.values()} == {"registry.fleet.example.com:50055"}
    ported = edge_envs(render({"registry": {"port": 6000}, "edge": {"follow": {"channel": "beta"}}}))
    assert ported["edge"]["PLASMA_EDGE_REGISTRY_TARGET"] == "plasma-registry:6000"
    assert ported["edge"]["PLASMA_EDGE_CHANNEL"] == "beta"


def test_fleet_example_follows_stable_on_every_edge() -> None:
    objects = render(example("fleet.yaml"))
    envs = edge_envs(objects)
    assert set(envs) == {"edge", "edge-device"}
    assert {env["PLASMA_EDGE_CHANNEL"] for env in envs.values()} == {"stable"}
    named(objects, "Deployment", "plasma-registry")


def ray_containers(cluster: Obj) -> tuple[Obj, Obj]:
    """The head's container and the (one) worker group's."""
    (head,) = cluster["spec"]["headGroupSpec"]["template"]["spec"]["containers"]
    (group,) = cluster["spec"]["workerGroupSpecs"]
    (worker,) = group["template"]["spec"]["containers"]
    return head, worker


def test_raycluster_is_optional() -> None:
    defaults = render({})
    assert not of_kind(defaults, "RayCluster")
    simulator = env_of(pod_spec(workload_of(defaults, "simulator"))["containers"][0])
    assert "PLASMA_RAY_ADDRESS" not in simulator and "PLASMA_SIMULATOR_BATCH_PATHS" not in simulator
    objects = render(example("ray.yaml"))
    (cluster,) = of_kind(objects, "RayCluster")
    assert cluster["apiVersion"] == "ray.io/v1"
    assert "annotations" not in cluster["metadata"]
    (group,) = cluster["spec"]["workerGroupSpecs"]
    assert group["groupName"] and 1 <= group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
    # A head and one worker group (their pod templates are validated in test_every_object_is_valid_kubernetes).
    assert len(list(ray_pod_templates(objects))) == 2


@pytest.mark.parametrize("scenario", ["examples/ray.yaml", "everything"])
def test_simulator_runs_its_batches_on_the_raycluster(scenario: str) -> None:
    """What deploy/docker-compose.cluster.yml does, as KubeRay objects: the simulator is the Ray Client driver."""
    objects = render(SCENARIOS[scenario])
    (cluster,) = of_kind(objects, "RayCluster")
    simulator = pod_spec(workload_of(objects, "simulator"))["containers"][0]
    head, worker = ray_containers(cluster)
    # The head Service KubeRay makes: "<RayCluster name>-head-svc", its ports those of the head container, by the
    # names KubeRay gives them; the simulator reaches the Ray Client server behind it.
    client_port = {p["name"]: p["containerPort"] for p in head["ports"]}["client"]
    env = env_of(simulator)
    assert env["PLASMA_RAY_ADDRESS"] == f"ray://{cluster['metadata']['name']}-head-svc:{client_port}"
    assert env["PLASMA_SIMULATOR_BATCH_PATHS"] == "64"
    assert {p["name"]: p["containerPort"] for p in head["ports"]} == {
        "gcs-server": 6379, "dashboard": 8265, "client": 10001, "metrics": 8080}
    assert {p["name"]: p["containerPort"] for p in worker["ports"]} == {"metrics": 8080}
    # Driver and cluster run the same image: the same Ray, Python, torch and Plasma code.
    assert head["image"] == worker["image"] == simulator["image"]
    assert head["imagePullPolicy"] == simulator["imagePullPolicy"]
    # KubeRay's rayVersion is the Ray the image has (pyproject.toml's pin).
    pinned = re.search(r'"ray\[[a-z,]+\]==([0-9.]+)"', (ROOT / "pyproject.toml").read_text())
    assert pinned, "pyproject.toml pins ray"
    assert cluster["spec"]["rayVersion"] == pinned.group(1)
    # The head schedules (no CPUs), the workers run one batch per CPU; the compose cluster's other settings.
    head_params = cluster["spec"]["headGroupSpec"]["rayStartParams"]
    assert head_params == {"num-cpus": "0", "ray-client-server-port": str(client_port), "dashboard-host": "0.0.0.0",
                           "object-store-memory": "200000000", "metrics-export-port": "8080"}
    (group,) = cluster["spec"]["workerGroupSpecs"]
    assert group["rayStartParams"] == {"num-cpus": "1", "object-store-memory": "200000000",
                                       "metrics-export-port": "8080"}
    assert all(isinstance(v, str) for v in {**head_params, **group["rayStartParams"]}.values())
    for template in ray_pod_templates(objects):
        spec = template["spec"]
        (container,) = spec["containers"]
        # The object store in a memory emptyDir of bounded size.
        shm = volume(spec, mount(container, "shm", "/dev/shm")["name"])["emptyDir"]
        assert shm["medium"] == "Memory" and shm["sizeLimit"]
        for kind in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(container["resources"][kind])
        # Probes of our own (KubeRay's default ones need wget, which the image lacks), through the image's Python.
        for kind in ("readinessProbe", "livenessProbe"):
            command = container[kind]["exec"]["command"]
            assert command[:2] == ["/opt/plasma/venv/bin/python", "-c"]
            assert "52365/api/local_raylet_healthz" in command[2]
        assert env_of(container)["RAY_USAGE_STATS_ENABLED"] == "0"
    assert "8265/api/gcs_healthz" in head["readinessProbe"]["exec"]["command"][2]
    assert str(client_port) in head["readinessProbe"]["exec"]["command"][2]


def test_raycluster_follows_the_simulator_image_and_values() -> None:
    objects = render({"ray": {"enabled": True, "batchPaths": 128, "workers": {"numCpus": 2, "replicas": 3}},
                      "simulator": {"image": {"repository": "team/sim", "tag": "7"}},
                      "image": {"registry": "registry.example.com/"}, "fullnameOverride": "lab"})
    (cluster,) = of_kind(objects, "RayCluster")
    assert cluster["metadata"]["name"] == "lab-ray"
    head, worker = ray_containers(cluster)
    assert head["image"] == worker["image"] == "registry.example.com/team/sim:7"
    (group,) = cluster["spec"]["workerGroupSpecs"]
    assert group["rayStartParams"]["num-cpus"] == "2"
    assert group["replicas"] == 3
    env = env_of(pod_spec(workload_of(objects, "simulator"))["containers"][0])
    assert env["PLASMA_RAY_ADDRESS"] == "ray://lab-ray-head-svc:10001"
    assert env["PLASMA_SIMULATOR_BATCH_PATHS"] == "128"
    # A cpu device is what Ray runs anyway: accepted.
    render({"ray": {"enabled": True}, "simulator": {"env": {"PLASMA_SIMULATOR_DEVICE": "cpu"}}})


def docs_network_policies() -> list[Obj]:
    text = (ROOT / "docs" / "kubernetes.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", text, flags=re.DOTALL)
    return [doc for block in blocks for doc in yaml.safe_load_all(block) if doc and doc.get("kind") == "NetworkPolicy"]


def test_docs_network_policy_keeps_ray_inside(validator: Callable[[Obj, str], None]) -> None:
    """docs/kubernetes.md's NetworkPolicy example: valid, and it selects the pods the chart makes."""
    (policy,) = docs_network_policies()
    for version in kubernetes_versions():
        validator(policy, version)
    objects = render(example("ray.yaml"))

    def selects(selector: Obj, labels: dict[str, str]) -> bool:
        return selector["matchLabels"].items() <= labels.items()

    ray_labels = [t["metadata"]["labels"] for t in ray_pod_templates(objects)]
    simulator_labels = workload_of(objects, "simulator")["spec"]["template"]["metadata"]["labels"]
    assert all(selects(policy["spec"]["podSelector"], labels) for labels in ray_labels)
    assert not selects(policy["spec"]["podSelector"], simulator_labels)
    # Ray nodes reach each other on any port; the simulator reaches the Ray Client port only.
    rules = policy["spec"]["ingress"]
    from_ray = [r for r in rules if all(selects(p["podSelector"], ray_labels[0]) for p in r["from"])]
    assert len(from_ray) == 1 and "ports" not in from_ray[0]
    from_simulator = [r for r in rules if all(selects(p["podSelector"], simulator_labels) for p in r["from"])]
    assert len(from_simulator) == 1 and from_simulator[0]["ports"] == [{"protocol": "TCP", "port": 10001}]


def test_helm_lint_finds_no_warnings() -> None:
    try:
        import helm_python
    except ImportError:
        helm = shutil.which("helm")
        if helm is None:
            _unavailable("neither helm-python-sdk nor helm is installed")
        done = subprocess.run([str(helm), "lint", "--strict", str(CHART)], capture_output=True, text=True,
                              timeout=60, check=False)
        assert done.returncode == 0, done.stdout + done.stderr
        return
    report = helm_python.lint(str(CHART))
    # Helm's severities: 1 info (e.g. "icon is recommended"), 2 warning, 3 error.
    assert not report["errors"], report
    assert [m for m in report["messages"] if m["severity"] >= 2] == [], report


def test_renderer_is_helm() -> None:
    """Names the engine in the test report (-v), so a run says what rendered the chart."""
    render_fn, description = _renderer()
    if render_fn is None:
        _unavailable(description)
    print(description)
    assert "helm" in description.lower()
