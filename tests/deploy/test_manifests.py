"""The deployment files in deploy/: schema validation and cross-checks.

The three-node topology (a top-level node; a textile secondary serving 88.118 and an
elevator secondary serving 88.119, both docked to the top) exists twice: as a Compose
file (deploy/topology/compose.yaml) and as Kubernetes manifests (deploy/k8s/). Next to
it, the single-node quick start (deploy/compose.yaml).

- Kubernetes: every resource against the Kubernetes 1.30 schemas that kubernetes-validate
  ships, in strict mode (an unknown field fails); where kubectl is installed, the
  kustomize output as well (the generated Secret included).
- Compose: against the Compose Specification JSON schema vendored in deploy/schemas/, and
  with `docker compose config` where Docker Compose is installed.
- Cross-checks: each node's role, prefixes and upstream, parsed by idnode's own settings
  loader (so an unknown IDNODE_* name or a bad value fails); the probes and Prometheus
  scraping the admin ports; the docking bootstrap; no secret written into a ConfigMap or
  a Compose environment.

Nothing here starts a container or talks to a cluster; the module takes a second or two.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import kubernetes_validate
import pytest
import yaml

from node.settings import ROLES, Settings, env_name, load_settings, setting_names
from node.signing.keystore import PASSPHRASE_ENV

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
K8S = DEPLOY / "k8s"
TOPOLOGY_COMPOSE = DEPLOY / "topology" / "compose.yaml"
SINGLE_COMPOSE = DEPLOY / "compose.yaml"
COMPOSE_FILES = (SINGLE_COMPOSE, TOPOLOGY_COMPOSE)
COMPOSE_SCHEMA = DEPLOY / "schemas" / "compose-spec.json"
INIT_SCRIPT = DEPLOY / "topology" / "postgres-init" / "10-idnode-databases.sh"

# A version kubernetes-validate (pinned in pyproject.toml) ships schemas for.
K8S_VERSION = "1.30.0"


@dataclass(frozen=True)
class Node:
    role: str
    prefixes: tuple[str, ...]


# What the topology is meant to be: compose service / Kubernetes instance name -> node.
TOPOLOGY = {
    "top": Node("top-level", ()),
    "textile": Node("secondary", ("88.118",)),
    "elevator": Node("secondary", ("88.119",)),
}
SECONDARIES = {name: n for name, n in TOPOLOGY.items() if n.role == "secondary"}

# Environment names that carry secrets, wherever they appear.
SECRETISH = re.compile(r"PASSWORD|PASSPHRASE|SECRET|TOKEN|PRIVATE|CREDENTIAL", re.IGNORECASE)
# Every IDNODE_* name the node reads: its settings, and the key passphrase.
KNOWN_IDNODE_ENV = {env_name(n) for n in setting_names()} | {PASSPHRASE_ENV}
# What stands in for values only a running system has.
POD_IP = "10.244.0.17"
DUMMY_SECRET = "not-a-real-secret"


# --- loading ------------------------------------------------------------------------


def load_yaml_documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]


def k8s_manifest_files() -> list[Path]:
    return sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")


def k8s_resources() -> list[tuple[Path, dict[str, Any]]]:
    return [(p, doc) for p in k8s_manifest_files() for doc in load_yaml_documents(p)]


K8S_RESOURCES = k8s_resources()


def k8s_find(kind: str, name: str) -> dict[str, Any]:
    found = [d for _, d in K8S_RESOURCES if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name} in deploy/k8s, found {len(found)}"
    return found[0]


def k8s_of_kind(kind: str) -> list[dict[str, Any]]:
    return [d for _, d in K8S_RESOURCES if d["kind"] == kind]


def kustomization() -> dict[str, Any]:
    data = yaml.safe_load((K8S / "kustomization.yaml").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def secret_example_keys() -> dict[str, str]:
    """The keys (and values, which must be empty) of deploy/k8s/secrets.env.example."""
    out = {}
    for line in (K8S / "secrets.env.example").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, f"secrets.env.example: {line!r} is not KEY=VALUE"
            out[key.strip()] = value.strip()
    return out


def load_compose(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


# --- Compose interpolation ----------------------------------------------------------

_COMPOSE_VAR = re.compile(
    r"\$(?:(?P<escaped>\$)"
    r"|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
    r"|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)
_WHOLE_REFERENCE = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*(?::?\?[^}]*)?\}")


def compose_variables(value: Any) -> Iterator[tuple[str, str | None]]:
    """(name, operator) of every variable a Compose value refers to."""
    if isinstance(value, str):
        for m in _COMPOSE_VAR.finditer(value):
            if not m["escaped"]:
                yield (m["name"] or m["bare"]), m["op"]
    elif isinstance(value, Mapping):
        for v in value.values():
            yield from compose_variables(v)
    elif isinstance(value, list):
        for v in value:
            yield from compose_variables(v)


def interpolate(value: Any, env: Mapping[str, str]) -> Any:
    """Compose's variable substitution (${VAR}, ${VAR:-default}, ${VAR:?error}, $$)."""
    if isinstance(value, str):

        def sub(m: re.Match[str]) -> str:
            if m["escaped"]:
                return "$"
            name, op, arg = (m["name"] or m["bare"]), m["op"], m["arg"] or ""
            got = env.get(name)
            unset_or_empty = got is None or (got == "" and op is not None and op[0] == ":")
            if op in ("-", ":-") and unset_or_empty:
                return arg
            if op in ("?", ":?") and unset_or_empty:
                raise KeyError(f"{name}: {arg}")
            return got or ""

        return _COMPOSE_VAR.sub(sub, value)
    if isinstance(value, Mapping):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    return value


def compose_environment(service: Mapping[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def is_idnode_image(service: Mapping[str, Any]) -> bool:
    return "build" in service or str(service.get("image", "")).split(":")[0].endswith("idnode")


def compose_nodes(data: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The services that run an idnode node: the image's entrypoint, `serve`."""
    out = {}
    for name, svc in data["services"].items():
        command = svc.get("command") or ["serve"]
        command = command.split() if isinstance(command, str) else command
        if is_idnode_image(svc) and "entrypoint" not in svc and command[:1] == ["serve"]:
            out[name] = svc
    return out


def required_variables(data: Mapping[str, Any]) -> set[str]:
    """The variables a Compose file cannot do without (${VAR:?...})."""
    return {name for name, op in compose_variables(data) if op in ("?", ":?")}


def stand_in_env(data: Mapping[str, Any]) -> dict[str, str]:
    """A value for every variable a Compose file requires, as an operator would set them."""
    return {
        name: "203.0.113.7" if name.endswith("PUBLIC_ADDRESS") else DUMMY_SECRET
        for name in required_variables(data)
    }


def interpolated(path: Path) -> dict[str, Any]:
    data = load_compose(path)
    out = interpolate(data, stand_in_env(data))
    assert isinstance(out, dict)
    return out


# --- Kubernetes helpers -------------------------------------------------------------


def pod_spec(workload: Mapping[str, Any]) -> dict[str, Any]:
    spec = workload["spec"]["template"]["spec"]
    assert isinstance(spec, dict)
    return spec


def container(workload: Mapping[str, Any], name: str) -> dict[str, Any]:
    found = [c for c in pod_spec(workload)["containers"] if c["name"] == name]
    assert len(found) == 1, f"{workload['metadata']['name']} has no container {name}"
    return found[0]


def effective_k8s_env(c: Mapping[str, Any]) -> dict[str, str]:
    """The environment a container starts with: its ConfigMaps, then its env entries
    (which win), with stand-ins for the values only a cluster has."""
    env: dict[str, str] = {}
    for source in c.get("envFrom", []):
        assert "configMapRef" in source, "envFrom is meant for ConfigMaps (settings) only"
        env |= k8s_find("ConfigMap", source["configMapRef"]["name"]).get("data", {})
    for item in c.get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
        elif "secretKeyRef" in item["valueFrom"]:
            env[item["name"]] = DUMMY_SECRET
        elif item["valueFrom"].get("fieldRef", {}).get("fieldPath") == "status.podIP":
            env[item["name"]] = POD_IP
        else:
            env[item["name"]] = "stand-in"
    return env


def secret_key_refs(value: Any) -> Iterator[dict[str, Any]]:
    """Every secretKeyRef anywhere in a resource."""
    if isinstance(value, Mapping):
        for k, v in value.items():
            if k == "secretKeyRef":
                yield dict(v)
            else:
                yield from secret_key_refs(v)
    elif isinstance(value, list):
        for v in value:
            yield from secret_key_refs(v)


def named_port(c: Mapping[str, Any], port: int | str) -> int:
    if isinstance(port, int):
        return port
    found = [p["containerPort"] for p in c["ports"] if p.get("name") == port]
    assert len(found) == 1, f"container {c['name']} has no port named {port!r}"
    return int(found[0])


def idnode_env_names(env: Mapping[str, str]) -> set[str]:
    return {k for k in env if k.startswith("IDNODE_")}


def parse_settings(env: Mapping[str, str], where: str) -> Settings:
    unknown = idnode_env_names(env) - KNOWN_IDNODE_ENV
    assert not unknown, f"{where}: unknown IDNODE_* names (idnode ignores them): {unknown}"
    return load_settings(env=dict(env))


def check_node_settings(s: Settings, node: Node, where: str) -> None:
    assert s.role == node.role, f"{where}: role {s.role}, expected {node.role}"
    assert s.prefixes == node.prefixes, f"{where}: prefixes {s.prefixes}, expected {node.prefixes}"
    assert s.bind == "0.0.0.0", f"{where}: a container node listens on every interface"
    assert s.public_address, f"{where}: IDNODE_PUBLIC_ADDRESS is required bound to 0.0.0.0"
    assert s.database_url, f"{where}: the node runs against the topology's PostgreSQL"
    if node.role == "top-level":
        assert s.upstream == (), f"{where}: the top-level has no upstream"


# --- Kubernetes: schema validation --------------------------------------------------


def test_kustomization_lists_every_manifest() -> None:
    listed = kustomization()["resources"]
    assert sorted(listed) == sorted(p.name for p in k8s_manifest_files())
    assert len(K8S_RESOURCES) >= 15  # the files were found and parsed


def assert_valid_k8s(resource: Mapping[str, Any], where: str) -> None:
    try:
        kubernetes_validate.validate(dict(resource), K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        path = ".".join(str(p) for p in exc.path)
        pytest.fail(
            f"{where}: {resource['kind']}/{resource['metadata']['name']}: {path}: {exc.message}"
        )
    except kubernetes_validate.SchemaNotFoundError as exc:
        pytest.fail(f"{where}: {exc.message}")


@pytest.mark.parametrize(
    "path, resource",
    K8S_RESOURCES,
    ids=[f"{p.name}:{d['kind']}/{d['metadata']['name']}" for p, d in K8S_RESOURCES],
)
def test_k8s_resource_validates_strictly(path: Path, resource: dict[str, Any]) -> None:
    assert_valid_k8s(resource, path.name)
    if resource["kind"] == "Namespace":
        assert resource["metadata"]["name"] == kustomization()["namespace"]
    else:
        assert resource["metadata"].get("namespace") == kustomization()["namespace"]


def test_k8s_validation_is_strict() -> None:
    """The validator really rejects what a cluster would: an unknown field, a wrong type."""
    deployment = copy.deepcopy(k8s_find("Deployment", "idnode-top"))
    kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)
    unknown = copy.deepcopy(deployment)
    pod_spec(unknown)["containers"][0]["readinesProbe"] = {"httpGet": {"port": 9100}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(unknown, K8S_VERSION, strict=True)
    wrong_type = copy.deepcopy(deployment)
    wrong_type["spec"]["replicas"] = "one"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(wrong_type, K8S_VERSION, strict=True)


def test_kustomize_output_validates(tmp_path: Path) -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed: the kustomize output is not rendered")
    work = tmp_path / "k8s"
    shutil.copytree(K8S, work)
    keys = secret_example_keys()
    (work / "secrets.env").write_text("".join(f"{k}={DUMMY_SECRET}\n" for k in keys))
    rendered = subprocess.run(
        [kubectl, "kustomize", str(work)], capture_output=True, text=True, timeout=30
    )
    assert rendered.returncode == 0, rendered.stderr
    docs = [d for d in yaml.safe_load_all(rendered.stdout) if d]
    for doc in docs:
        assert_valid_k8s(doc, "kubectl kustomize deploy/k8s")
    secrets = [d for d in docs if d["kind"] == "Secret"]
    assert len(secrets) == 1 and set(secrets[0]["data"]) == set(keys)
    generated = secrets[0]["metadata"]["name"]
    refs = {ref["name"] for doc in docs for ref in secret_key_refs(doc)}
    assert refs == {generated}, "every secretKeyRef follows the generated Secret's name"
    assert {d["metadata"].get("namespace", "idis") for d in docs} == {"idis"}


# --- Kubernetes: the topology -------------------------------------------------------


@pytest.mark.parametrize("name, node", TOPOLOGY.items())
def test_k8s_node(name: str, node: Node) -> None:
    deployment = k8s_find("Deployment", f"idnode-{name}")
    c = container(deployment, "idnode")
    env = effective_k8s_env(c)
    where = f"deploy/k8s Deployment idnode-{name}"
    assert env.get("IDNODE_ROLE") == node.role, f"{where}: IDNODE_ROLE"
    s = parse_settings(env, where)
    check_node_settings(s, node, where)

    # The Service: native UDP and TCP, HTTP and admin ports, onto this Deployment's pods.
    service = k8s_find("Service", f"idnode-{name}")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    ports = {(p["port"], p.get("protocol", "TCP")): p for p in service["spec"]["ports"]}
    expected = {
        (s.handle_port, "UDP"),
        (s.handle_port, "TCP"),
        (s.http_port, "TCP"),
        (s.admin_port, "TCP"),
    }
    assert expected <= set(ports), f"{where}: Service ports {sorted(ports)}"
    for (port, _), p in ports.items():
        assert named_port(c, p.get("targetPort", port)) == port

    # Readiness on /readyz and liveness on /healthz, both of the admin port.
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        get = c[probe]["httpGet"]
        assert get["path"] == path, f"{where}: {probe}"
        assert named_port(c, get["port"]) == s.admin_port, f"{where}: {probe} port"

    # Requests and limits, and a cache that fits in the limit.
    resources = c["resources"]
    for part in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(resources[part]), f"{where}: resources.{part}"
    limit = resources["limits"]["memory"]
    units = {"Mi": 2**20, "Gi": 2**30}
    assert s.cache_max_bytes < int(limit[:-2]) * units[limit[-2:]], f"{where}: cache > limit"

    # Prometheus (annotation discovery) scrapes the admin port.
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == s.admin_port
    assert annotations["prometheus.io/path"] == "/metrics"

    # The data dir is on the node's volume, and the node's database is its own.
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    assert any(s.data_dir.is_relative_to(m) for m in mounts), f"{where}: data dir not on a volume"
    url = urlsplit(s.database_url or "")
    assert url.username == url.path.lstrip("/") == f"idnode_{name}", f"{where}: database"


@pytest.mark.parametrize("name", SECONDARIES)
def test_k8s_secondary_upstream_is_the_top_service(name: str) -> None:
    deployment = k8s_find("Deployment", f"idnode-{name}")
    s = parse_settings(effective_k8s_env(container(deployment, "idnode")), name)
    top_service = k8s_find("Service", "idnode-top")
    top = k8s_find("Deployment", "idnode-top")
    top_settings = parse_settings(effective_k8s_env(container(top, "idnode")), "top")
    native = {
        p["port"] for p in top_service["spec"]["ports"] if p["port"] == top_settings.handle_port
    }
    assert native == {top_settings.handle_port}
    assert s.upstream, f"idnode-{name}: IDNODE_UPSTREAM is not set"
    # The top's Service by name (idnode-top, idnode-top.idis, idnode-top.idis.svc...), or
    # srv: on its cluster DNS name, whose _handle._tcp record names the port "handle".
    service_names = re.compile(r"idnode-top(\.idis(\.svc(\.[a-z0-9.-]+)?)?)?")
    for address in s.upstream:
        if address.startswith("srv:"):
            assert service_names.fullmatch(address[4:]), f"idnode-{name}: upstream {address}"
            assert any(p.get("name") == "handle" for p in top_service["spec"]["ports"])
            continue
        host, _, port = address.rpartition(":")
        assert service_names.fullmatch(host), f"idnode-{name}: upstream {address}"
        assert int(port) in native, f"idnode-{name}: upstream {address}: not the native port"


def test_k8s_no_secrets_in_configmaps() -> None:
    secret_keys = set(secret_example_keys())
    for cm in k8s_of_kind("ConfigMap"):
        name = cm["metadata"]["name"]
        for key, value in cm.get("data", {}).items():
            assert not SECRETISH.search(key), f"ConfigMap {name}: {key} belongs in a Secret"
            assert key not in secret_keys, f"ConfigMap {name}: {key} belongs in a Secret"
            for url in re.findall(r"[a-z]+://\S+", value):
                assert urlsplit(url).password is None, f"ConfigMap {name}: password in {url}"
    assert not k8s_of_kind("Secret"), "Secrets come from secretGenerator, not from files"


def test_k8s_secrets_come_from_the_generated_secret() -> None:
    example = secret_example_keys()
    assert all(v == "" for v in example.values()), "secrets.env.example holds no values"
    generators = kustomization()["secretGenerator"]
    assert [g["name"] for g in generators] == ["idnode-secrets"]
    assert generators[0]["envs"] == ["secrets.env"]
    assert (K8S / ".gitignore").read_text().splitlines().count("secrets.env") == 1
    used: set[str] = set()
    for kind in ("Deployment", "StatefulSet", "Job"):
        for workload in k8s_of_kind(kind):
            for c in pod_spec(workload)["containers"]:
                for item in c.get("env", []):
                    ref = item.get("valueFrom", {}).get("secretKeyRef")
                    if SECRETISH.search(item["name"]):
                        assert ref, f"{workload['metadata']['name']}: {item['name']} is literal"
                    if ref:
                        assert ref["name"] == "idnode-secrets"
                        assert ref["key"] in example, f"{ref['key']} not in secrets.env.example"
                        used.add(ref["key"])
    assert used == set(example), f"unused secret keys: {set(example) - used}"


def test_k8s_admit_job() -> None:
    job = k8s_find("Job", "idnode-admit")
    c = pod_spec(job)["containers"][0]
    script = "\n".join(c.get("command", []) + c.get("args", []))
    assert "idnode upstream identity" in script
    assert re.search(r"idnode upstream admit \S+ --pubkey ", script)
    pairs = dict(re.findall(r"\b(\d+\.\d+):(idnode-[a-z]+)\b", script))
    assert pairs == {n.prefixes[0]: f"idnode-{name}" for name, n in SECONDARIES.items()}
    for prefix, deployment in pairs.items():
        k8s_find("Deployment", deployment)  # exists
        cm = k8s_find("ConfigMap", f"{deployment}-config")
        assert cm["data"]["IDNODE_PREFIXES"] == prefix
    assert "deployment/idnode-top" in script
    for name in ("requests", "limits"):
        assert c["resources"][name]
    # Its ServiceAccount may exec into the nodes, and nothing cluster-wide.
    account = pod_spec(job)["serviceAccountName"]
    bindings = [
        b
        for b in k8s_of_kind("RoleBinding")
        if {"kind": "ServiceAccount", "name": account, "namespace": "idis"} in b["subjects"]
    ]
    assert len(bindings) == 1 and bindings[0]["roleRef"]["kind"] == "Role"
    role = k8s_find("Role", bindings[0]["roleRef"]["name"])
    assert any("pods/exec" in r["resources"] and "create" in r["verbs"] for r in role["rules"])
    assert not k8s_of_kind("ClusterRoleBinding")


def test_k8s_postgres_statefulset() -> None:
    sts = k8s_find("StatefulSet", "idnode-postgres")
    c = container(sts, "postgres")
    assert c["resources"]["requests"] and c["resources"]["limits"]
    assert sts["spec"]["volumeClaimTemplates"], "the database is on a persistent volume"
    init = k8s_find("ConfigMap", "idnode-postgres-init")
    assert init["data"] == {INIT_SCRIPT.name: INIT_SCRIPT.read_text(encoding="utf-8")}, (
        "deploy/k8s/postgres.yaml's init script differs from the Compose one"
    )
    volumes = {v["name"]: v for v in pod_spec(sts)["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    init_volume = volumes[mounts["/docker-entrypoint-initdb.d"]]
    assert init_volume["configMap"]["name"] == "idnode-postgres-init"
    service = k8s_find("Service", sts["spec"]["serviceName"])
    for name in TOPOLOGY:
        cm = k8s_find("ConfigMap", f"idnode-{name}-config")
        assert urlsplit(cm["data"]["IDNODE_DATABASE_URL"]).hostname == service["metadata"]["name"]


# --- PostgreSQL init script ---------------------------------------------------------


def init_script_databases() -> dict[str, str]:
    """Database (and role) -> the environment variable holding its password."""
    text = INIT_SCRIPT.read_text(encoding="utf-8")
    return dict(re.findall(r'^idnode_create_database (\w+) "\$\{(\w+):-\}"', text, re.M))


def test_init_script_creates_every_node_database() -> None:
    created = init_script_databases()
    assert set(created) == {f"idnode_{name}" for name in TOPOLOGY}
    compose = load_compose(TOPOLOGY_COMPOSE)
    db_env = compose_environment(compose["services"]["db"])
    for name, svc in compose_nodes(compose).items():
        env = compose_environment(svc)
        url = urlsplit(env["IDNODE_DATABASE_URL"])
        database = url.path.lstrip("/")
        assert url.username == database == f"idnode_{name}"
        # The node logs in with the password the script gave its role.
        assert db_env[created[database]] == env["PGPASSWORD"], f"{name}: password variable"
    for name in TOPOLOGY:
        deployment = k8s_find("Deployment", f"idnode-{name}")
        refs = {
            i["name"]: i["valueFrom"]["secretKeyRef"]["key"]
            for i in container(deployment, "idnode")["env"]
            if "secretKeyRef" in i.get("valueFrom", {})
        }
        sts_refs = {
            i["name"]: i["valueFrom"]["secretKeyRef"]["key"]
            for i in container(k8s_find("StatefulSet", "idnode-postgres"), "postgres")["env"]
            if "secretKeyRef" in i.get("valueFrom", {})
        }
        assert sts_refs[created[f"idnode_{name}"]] == refs["PGPASSWORD"], name


# --- Compose: schema validation -----------------------------------------------------


@functools.cache
def compose_validator() -> jsonschema.Draft201909Validator:
    schema = json.loads(COMPOSE_SCHEMA.read_text(encoding="utf-8"))
    jsonschema.Draft201909Validator.check_schema(schema)
    return jsonschema.Draft201909Validator(schema)


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: str(p.relative_to(DEPLOY)))
def test_compose_file_matches_the_compose_spec(path: Path) -> None:
    errors = [
        f"{'.'.join(str(p) for p in e.absolute_path)}: {e.message}"
        for e in compose_validator().iter_errors(load_compose(path))
    ]
    assert not errors, "\n".join(errors)


def test_compose_schema_validation_is_live() -> None:
    data = load_compose(TOPOLOGY_COMPOSE)
    data["services"]["top"]["environmnet"] = {"IDNODE_ROLE": "top-level"}
    data["services"]["textile"]["depends_on"]["top"]["condition"] = "service_ready"
    assert len(list(compose_validator().iter_errors(data))) == 2


def docker_compose() -> list[str] | None:
    for command in (["docker", "compose"], ["docker-compose"]):
        if shutil.which(command[0]) is None:
            continue
        try:
            probe = subprocess.run([*command, "version"], capture_output=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if probe.returncode == 0:
            return command
    return None


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: str(p.relative_to(DEPLOY)))
def test_docker_compose_config(path: Path) -> None:
    command = docker_compose()
    if command is None:
        pytest.skip("Docker Compose is not installed: the files were checked against the schema")
    env = dict(os.environ) | stand_in_env(load_compose(path))
    done = subprocess.run(
        [*command, "-f", str(path), "config", "--quiet"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr


# --- Compose: the topology ----------------------------------------------------------


def test_every_compose_node_sets_its_role() -> None:
    for path in COMPOSE_FILES:
        nodes = compose_nodes(load_compose(path))
        assert nodes, f"{path}: no node service found"
        for name, svc in nodes.items():
            role = compose_environment(svc).get("IDNODE_ROLE")
            assert role in ROLES, f"{path}: {name} sets no valid IDNODE_ROLE ({role!r})"


def topology_settings() -> dict[str, Settings]:
    out = {}
    for name, svc in compose_nodes(interpolated(TOPOLOGY_COMPOSE)).items():
        out[name] = parse_settings(compose_environment(svc), f"{TOPOLOGY_COMPOSE}: {name}")
    return out


def test_compose_topology_nodes() -> None:
    data = interpolated(TOPOLOGY_COMPOSE)
    settings = topology_settings()
    assert set(settings) == set(TOPOLOGY)
    for name, node in TOPOLOGY.items():
        where = f"{TOPOLOGY_COMPOSE.name}: {name}"
        s = settings[name]
        check_node_settings(s, node, where)
        svc = data["services"][name]
        # HS_SITE advertises the address the node has on the compose network.
        networks = svc["networks"]
        assert [n.get("ipv4_address") for n in networks.values()] == [s.public_address], where
        # Its data dir is on its own volume.
        mounts = {v.split(":")[1]: v.split(":")[0] for v in svc["volumes"]}
        assert any(s.data_dir.is_relative_to(m) for m in mounts), f"{where}: data dir"
        assert mounts[next(m for m in mounts if s.data_dir.is_relative_to(m))] == f"{name}-data"


@pytest.mark.parametrize("name", SECONDARIES)
def test_compose_secondary_upstream_is_the_top(name: str) -> None:
    data = interpolated(TOPOLOGY_COMPOSE)
    settings = topology_settings()
    top = settings["top"]
    top_addresses = {"top", top.public_address}
    assert settings[name].upstream, f"{name}: IDNODE_UPSTREAM is not set"
    for address in settings[name].upstream:
        host, _, port = address.rpartition(":")
        assert host in top_addresses and int(port) == top.handle_port, f"{name}: {address}"
    # It starts after the top and shares a network with it.
    assert "top" in data["services"][name]["depends_on"]
    assert set(data["services"][name]["networks"]) & set(data["services"]["top"]["networks"])


def test_compose_prometheus_scrapes_every_admin_port() -> None:
    for path, scrape in (
        (TOPOLOGY_COMPOSE, DEPLOY / "topology" / "prometheus.yml"),
        (SINGLE_COMPOSE, DEPLOY / "prometheus.yml"),
    ):
        data = load_compose(path)
        mounted = [
            v
            for v in data["services"]["prometheus"]["volumes"]
            if v.startswith("./prometheus.yml:")
        ]
        assert (path.parent / mounted[0].split(":")[0]).resolve() == scrape.resolve()
        config = yaml.safe_load(scrape.read_text(encoding="utf-8"))
        targets = {
            t
            for job in config["scrape_configs"]
            if job.get("metrics_path", "/metrics") == "/metrics"
            for sc in job["static_configs"]
            for t in sc["targets"]
        }
        expected = set()
        for name, svc in compose_nodes(interpolated(path)).items():
            admin = load_settings(env=compose_environment(svc)).admin_port
            expected.add(f"{name}:{admin}")
        assert targets == expected, f"{scrape}: scrapes {targets}, nodes are {expected}"


def test_compose_environment_holds_no_literal_secret() -> None:
    for path in COMPOSE_FILES:
        data = load_compose(path)
        for name, svc in data["services"].items():
            for key, value in compose_environment(svc).items():
                where = f"{path.relative_to(DEPLOY)}: {name}: {key}"
                if SECRETISH.search(key):
                    # A variable the operator must set; a default would be a literal secret.
                    assert _WHOLE_REFERENCE.fullmatch(value), f"{where} = {value!r}"
                for url in re.findall(r"[a-z]+://\S+", value):
                    password = urlsplit(url).password
                    assert password is None or _WHOLE_REFERENCE.fullmatch(password), where


def test_secret_variables_are_documented_and_shared_with_k8s() -> None:
    data = load_compose(TOPOLOGY_COMPOSE)
    required = required_variables(data)
    assert required == set(secret_example_keys()), "Compose and Kubernetes secrets differ"
    readme = (DEPLOY / "README.md").read_text(encoding="utf-8")
    missing = [v for v in sorted(required) if v not in readme]
    assert not missing, f"deploy/README.md does not name {missing}"
    assert (DEPLOY / "topology" / ".gitignore").read_text().splitlines().count(".env") == 1


def test_compose_docking_bootstrap() -> None:
    data = load_compose(TOPOLOGY_COMPOSE)
    services = data["services"]
    identities_at = "/identities"

    def mounts(svc: Mapping[str, Any]) -> dict[str, str]:
        return {v.split(":")[1]: v.split(":")[0] for v in svc.get("volumes", [])}

    def script(svc: Mapping[str, Any]) -> str:
        command = svc.get("command", [])
        return " ".join(command) if isinstance(command, list) else command

    admit = services["admit"]
    # The top admits with its own settings and data, once ready, after the identities.
    assert compose_environment(admit) == compose_environment(services["top"])
    assert mounts(admit)["/var/lib/idnode"] == mounts(services["top"])["/var/lib/idnode"]
    assert mounts(admit)[identities_at] == "identities"
    assert admit["depends_on"]["top"]["condition"] == "service_healthy"
    for name, node in SECONDARIES.items():
        prefix = node.prefixes[0]
        pem = f"{identities_at}/{prefix}.pem"
        identity = services[f"{name}-identity"]
        # Each secondary's identity, with its settings and data, to the shared volume.
        assert compose_environment(identity) == compose_environment(services[name])
        assert mounts(identity)["/var/lib/idnode"] == mounts(services[name])["/var/lib/idnode"]
        assert mounts(identity)[identities_at] == "identities"
        assert "idnode upstream identity >" in script(identity) and pem in script(identity)
        assert identity["depends_on"]["identities-init"]["condition"] == (
            "service_completed_successfully"
        )
        assert f"idnode upstream admit {prefix} --pubkey {pem}" in script(admit)
        assert admit["depends_on"][f"{name}-identity"]["condition"] == (
            "service_completed_successfully"
        )
    init = services["identities-init"]
    assert mounts(init)[identities_at] == "identities" and "chown 10001" in " ".join(
        init["entrypoint"]
    )
    for svc in ("identities-init", "admit", *(f"{n}-identity" for n in SECONDARIES)):
        assert services[svc]["restart"] == "no", f"{svc} is a one-shot"
