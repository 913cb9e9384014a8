"""The rendered kustomize overlays are valid Kubernetes, hardened, and agree with the code."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from relaystream.core.kafka.fencing import BROKER_ABORT_CHECK_INTERVAL_MS
from relaystream.core.kafka.topics import deployment_topics
from relaystream.core.runtime.settings import (
    CONFIG_FILE_VARIABLE,
    Settings,
    known_environment_variables,
    load_settings,
    settings_table,
)
from relaystream.ingest.service import transactional_id as ingest_transactional_id
from relaystream.routing.service import transactional_id as routing_transactional_id

from .manifests import (
    ABORT_CHECK_INTERVAL,
    OVERLAYS,
    REPO_ROOT,
    Resource,
    config_map_by_prefix,
    named,
    of_kind,
    pod_spec,
    render_overlay,
    strimzi_errors,
    topic_prefix,
)

# The oldest Kubernetes minor still commonly run, and the newest the schemas know.
KUBERNETES_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())
SERVICES = ("ingest", "routing", "scheduling", "delivery")
NAMESPACE = "relaystream"
# Secrets the manifests reference; docs/deployment.md says how to create each.
REFERENCED_SECRETS = frozenset({"relaystream-smtp-tls", "relaystream-api-tokens"})
GROUP_INSTANCE_ID = next(
    row.environment_variable
    for row in settings_table()
    if row.file_key == "kafka_group_instance_id"
)


# Every service runs as a StatefulSet: its pod names, and so its Kafka identities, outlive pods.
WORKLOAD = "StatefulSet"


def service_workload(resources: tuple[Resource, ...], service: str) -> Resource:
    return named(resources, WORKLOAD, f"relaystream-{service}")


def container(workload: Resource) -> Resource:
    (only,) = pod_spec(workload)["containers"]
    result: Resource = only
    return result


def container_environment(
    resources: tuple[Resource, ...], workload: Resource, pod_name: str = "<pod name>"
) -> dict[str, str]:
    """The environment the container starts with: envFrom ConfigMaps, then env values (the
    pod's name where the downward API gives it)."""
    env: dict[str, str] = {}
    for source in container(workload).get("envFrom", []):
        config_map = named(resources, "ConfigMap", source["configMapRef"]["name"])
        env.update(config_map["data"])
    for variable in container(workload).get("env", []):
        if variable.get("valueFrom") == {"fieldRef": {"fieldPath": "metadata.name"}}:
            env[variable["name"]] = pod_name
        else:
            env[variable["name"]] = variable.get("value", "<from valueFrom>")
    return env


def rendered_settings(
    resources: tuple[Resource, ...], service: str, tmp: Path, pod_name: str = "<pod name>"
) -> Settings:
    """What the service's settings module reads inside the pod: the mounted config file and
    the container's environment."""
    workload = service_workload(resources, service)
    env = container_environment(resources, workload, pod_name)
    config = config_map_by_prefix(resources, "relaystream-config")
    path = tmp / "config.yaml"
    path.write_text(config["data"]["config.yaml"], encoding="utf-8")
    assert env[CONFIG_FILE_VARIABLE] == "/etc/relaystream/config.yaml"
    environ = {k: v for k, v in env.items() if k != CONFIG_FILE_VARIABLE}
    return load_settings(path, environ=environ)


def is_strimzi(resource: Resource) -> bool:
    return str(resource["apiVersion"]).startswith("kafka.strimzi.io/")


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


@pytest.fixture(params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def resources(overlay: str) -> tuple[Resource, ...]:
    return render_overlay(overlay)


def test_every_overlay_renders_the_same_application(resources: tuple[Resource, ...]) -> None:
    kinds = {r["kind"] for r in resources}
    assert {
        "Namespace",
        "ConfigMap",
        WORKLOAD,
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "NetworkPolicy",
        "KafkaTopic",
    } <= kinds
    assert sorted(d["metadata"]["name"] for d in of_kind(resources, WORKLOAD)) == sorted(
        f"relaystream-{s}" for s in SERVICES
    )
    assert of_kind(resources, "Deployment") == []


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_is_a_parallel_stateful_set_without_volumes(
    resources: tuple[Resource, ...], service: str
) -> None:
    spec = service_workload(resources, service)["spec"]
    # Pods start and stop together; no ordered start behind a slow ordinal.
    assert spec["podManagementPolicy"] == "Parallel"
    # Its governing Service is headless and selects exactly its pods.
    governing = named(resources, "Service", spec["serviceName"])
    assert governing["spec"]["clusterIP"] == "None"
    assert governing["spec"]["selector"] == spec["selector"]["matchLabels"]
    # Kafka is the state: no persistent volume to provision, keep or move.
    assert "volumeClaimTemplates" not in spec
    for volume in spec["template"]["spec"]["volumes"]:
        assert set(volume) & {"configMap", "secret", "emptyDir"}, volume
        assert "persistentVolumeClaim" not in volume


@pytest.mark.parametrize("service", ["routing", "ingest"])
def test_transactional_ids_are_the_pod_names_of_a_stateful_set(
    resources: tuple[Resource, ...], service: str, tmp_path: Path
) -> None:
    # A replacement pod has its predecessor's name (relaystream-routing-1 again), so it also
    # has its transactional id and fences it: the broker aborts what it left open at once.
    transactional_ids = {
        "routing": routing_transactional_id,
        "ingest": ingest_transactional_id,
    }[service]
    ids = set()
    for ordinal in (0, 1):
        pod = f"relaystream-{service}-{ordinal}"
        settings = rendered_settings(resources, service, tmp_path, pod_name=pod)
        assert settings.runtime.kafka_group_instance_id == pod
        assert getattr(settings, service).transactional_id is None  # derived, not overridden
        transactional_id = transactional_ids(
            settings, deployment_topics(settings.runtime.topic_prefix)
        )
        assert transactional_id == f"{topic_prefix(resources)}{service}-{pod}"
        ids.add(transactional_id)
    assert len(ids) == 2


def test_builtin_objects_are_valid_in_strict_mode(resources: tuple[Resource, ...]) -> None:
    errors = []
    for resource in resources:
        if is_strimzi(resource):
            continue
        for version in KUBERNETES_VERSIONS:
            try:
                kubernetes_validate.validate(resource, version, strict=True)
            except kubernetes_validate.ValidationError as error:
                errors.append(
                    f"{resource['kind']}/{resource['metadata']['name']} (k8s {version}): "
                    f"{error.message} at {'/'.join(map(str, error.path))}"
                )
    assert errors == []


def test_strict_validation_rejects_an_unknown_field() -> None:
    # The check above can fail: a misspelt field is an error, not silently dropped.
    workload = copy.deepcopy(service_workload(render_overlay("dev"), "routing"))
    container(workload)["imagePullPolice"] = "Always"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(workload, KUBERNETES_VERSIONS[-1], strict=True)


def test_strimzi_objects_match_the_crd_schemas(resources: tuple[Resource, ...]) -> None:
    errors = {
        f"{r['kind']}/{r['metadata']['name']}": strimzi_errors(r)
        for r in resources
        if is_strimzi(r)
    }
    assert errors and all(kind_errors == [] for kind_errors in errors.values()), errors


def test_strimzi_validation_rejects_unknown_and_mistyped_fields() -> None:
    topic = copy.deepcopy(of_kind(render_overlay("dev"), "KafkaTopic")[0])
    topic["spec"]["partition"] = 3
    assert any("partition" in error for error in strimzi_errors(topic))
    kafka = copy.deepcopy(of_kind(render_overlay("strimzi"), "Kafka")[0])
    kafka["spec"]["kafka"]["listeners"][0]["port"] = "9092"
    assert strimzi_errors(kafka) != []


def test_objects_live_in_the_relaystream_namespace(resources: tuple[Resource, ...]) -> None:
    assert [n["metadata"]["name"] for n in of_kind(resources, "Namespace")] == [NAMESPACE]
    assert {r["metadata"].get("namespace") for r in resources if r["kind"] != "Namespace"} == {
        NAMESPACE
    }


@pytest.mark.parametrize("service", SERVICES)
def test_pods_are_locked_down(resources: tuple[Resource, ...], service: str) -> None:
    workload = service_workload(resources, service)
    pod = pod_spec(workload)
    assert pod["automountServiceAccountToken"] is False
    assert pod["enableServiceLinks"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001  # the image's USER
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    main = container(workload)
    security = main["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert security["capabilities"] == {"drop": ["ALL"]}
    # A read-only root needs a writable /tmp.
    tmp_mounts = [m for m in main["volumeMounts"] if m["mountPath"] == "/tmp"]
    assert len(tmp_mounts) == 1
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[tmp_mounts[0]["name"]]
    for kind in ("requests", "limits"):
        assert set(main["resources"][kind]) == {"cpu", "memory"}, (service, kind)


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_runs_its_entrypoint_and_probes_its_health_port(
    resources: tuple[Resource, ...], service: str, tmp_path: Path
) -> None:
    workload = service_workload(resources, service)
    main = container(workload)
    assert "command" not in main  # the image's ENTRYPOINT, relaystream
    assert main["args"] == ["run", service]
    ports = {p["name"]: p["containerPort"] for p in main["ports"]}
    settings = rendered_settings(resources, service, tmp_path)
    assert ports["http-health"] == settings.runtime.http_bind.port
    assert settings.runtime.http_bind.host == "0.0.0.0"
    assert main["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http-health"}
    assert main["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http-health"}
    assert main["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http-health"}
    annotations = workload["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(ports["http-health"])
    assert annotations["prometheus.io/path"] == "/metrics"
    if service == "ingest":
        assert ports["smtp"] == settings.ingest.smtp_port
        assert ports["http-api"] == settings.ingest.http_port
        assert settings.ingest.smtp_bind == settings.ingest.http_bind == "0.0.0.0"


@pytest.mark.parametrize("service", SERVICES)
def test_termination_grace_exceeds_the_shutdown_grace(
    resources: tuple[Resource, ...], service: str, tmp_path: Path
) -> None:
    settings = rendered_settings(resources, service, tmp_path)
    grace = pod_spec(service_workload(resources, service))["terminationGracePeriodSeconds"]
    # A few seconds more, so that the cancellation after the grace still commits offsets.
    assert grace >= settings.runtime.shutdown_grace_seconds + 5


@pytest.mark.parametrize("service", SERVICES)
def test_every_consumer_is_a_static_group_member_named_after_its_pod(
    resources: tuple[Resource, ...], service: str
) -> None:
    # Each service's process is one consumer-group member (ingest: of the `submit` group). A
    # StatefulSet's pod name survives a container restart and the pod's replacement, and
    # differs between replicas: a killed container or a replaced pod comes back as the same
    # member, without a rebalance, and no two pods share an id.
    workload = service_workload(resources, service)
    assert workload["kind"] == "StatefulSet"
    variables = {v["name"]: v for v in container(workload).get("env", [])}
    assert GROUP_INSTANCE_ID in variables, f"{service} has no static group membership"
    assert variables[GROUP_INSTANCE_ID] == {
        "name": GROUP_INSTANCE_ID,
        "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}},
    }


def test_environment_names_are_settings(resources: tuple[Resource, ...]) -> None:
    known = known_environment_variables()
    used = set()
    for workload in of_kind(resources, WORKLOAD):
        used |= set(container_environment(resources, workload))
    assert used, "no environment found"
    assert sorted(used - known) == []


def test_config_files_mounted_where_the_settings_point(
    resources: tuple[Resource, ...], tmp_path: Path
) -> None:
    config = config_map_by_prefix(resources, "relaystream-config")
    assert set(config["data"]) == {"config.yaml", "policy.lua"}
    settings = rendered_settings(resources, "routing", tmp_path)
    for service in ("routing", "scheduling"):
        policy_path = getattr(settings, service).policy_path
        workload = service_workload(resources, service)
        mounts = {m["mountPath"]: m for m in container(workload)["volumeMounts"]}
        assert mounts[str(policy_path)]["subPath"] == "policy.lua"
    ingest = rendered_settings(resources, "ingest", tmp_path).ingest
    ingest_mounts = container(service_workload(resources, "ingest"))["volumeMounts"]
    volumes = {v["name"]: v for v in pod_spec(service_workload(resources, "ingest"))["volumes"]}
    by_secret = {
        volumes[m["name"]]["secret"]["secretName"]: m["mountPath"]
        for m in ingest_mounts
        if "secret" in volumes[m["name"]]
    }
    assert by_secret == {
        "relaystream-smtp-tls": str(Path(str(ingest.tls_cert)).parent),
        "relaystream-api-tokens": str(Path(str(ingest.api_tokens_file)).parent),
    }
    assert Path(str(ingest.tls_key)).parent == Path(str(ingest.tls_cert)).parent


def test_references_resolve(resources: tuple[Resource, ...]) -> None:
    config_maps = {c["metadata"]["name"] for c in of_kind(resources, "ConfigMap")}
    secrets = set()
    for workload in of_kind(resources, WORKLOAD):
        pod = pod_spec(workload)
        for volume in pod["volumes"]:
            if "configMap" in volume:
                assert volume["configMap"]["name"] in config_maps
            if "secret" in volume:
                secrets.add(volume["secret"]["secretName"])
        for source in container(workload).get("envFrom", []):
            assert source["configMapRef"]["name"] in config_maps
        mounted = {m["name"] for m in container(workload)["volumeMounts"]}
        assert mounted == {v["name"] for v in pod["volumes"]}
    assert secrets == REFERENCED_SECRETS
    # Secrets are referenced, never shipped.
    assert of_kind(resources, "Secret") == []
    docs = (REPO_ROOT / "docs" / "deployment.md").read_text(encoding="utf-8")
    for secret in REFERENCED_SECRETS:
        assert secret in docs


def test_services_reach_named_container_ports(resources: tuple[Resource, ...]) -> None:
    for service in of_kind(resources, "Service"):
        selected = [
            d
            for d in of_kind(resources, WORKLOAD)
            if selects(service["spec"]["selector"], d["spec"]["template"]["metadata"]["labels"])
        ]
        assert len(selected) == 1, service["metadata"]["name"]
        port_names = {p["name"] for p in container(selected[0])["ports"]}
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in port_names
    smtp = named(resources, "Service", "relaystream-smtp")
    assert [p["port"] for p in smtp["spec"]["ports"]] == [25]


def test_autoscalers_stay_within_partitions(resources: tuple[Resource, ...]) -> None:
    # The topic each autoscaled service consumes: instances beyond its partitions sit idle.
    consumed = {"relaystream-routing": "accepted", "relaystream-delivery": "attempts"}
    topics = {t["spec"]["topicName"]: t for t in of_kind(resources, "KafkaTopic")}
    prefix = topic_prefix(resources)
    autoscalers = of_kind(resources, "HorizontalPodAutoscaler")
    assert sorted(h["spec"]["scaleTargetRef"]["name"] for h in autoscalers) == sorted(consumed)
    for hpa in autoscalers:
        reference = hpa["spec"]["scaleTargetRef"]
        # The kind too: an autoscaler naming a Deployment that no longer exists scales nothing.
        assert (reference["apiVersion"], reference["kind"]) == ("apps/v1", WORKLOAD)
        target = named(resources, WORKLOAD, reference["name"])
        # A replica count in the manifest would reset the autoscaler on every apply.
        assert "replicas" not in target["spec"]
        partitions = topics[prefix + consumed[target["metadata"]["name"]]]["spec"]["partitions"]
        assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"] <= partitions


def test_scheduling_replicas_within_queue_partitions(resources: tuple[Resource, ...]) -> None:
    prefix = topic_prefix(resources)
    topics = {t["spec"]["topicName"]: t["spec"] for t in of_kind(resources, "KafkaTopic")}
    replicas = service_workload(resources, "scheduling")["spec"]["replicas"]
    assert 1 <= replicas <= topics[prefix + "queued"]["partitions"]


def test_every_workload_has_one_disruption_budget(resources: tuple[Resource, ...]) -> None:
    budgets = of_kind(resources, "PodDisruptionBudget")
    for workload in of_kind(resources, WORKLOAD):
        labels = workload["spec"]["template"]["metadata"]["labels"]
        matching = [b for b in budgets if selects(b["spec"]["selector"]["matchLabels"], labels)]
        assert len(matching) == 1, workload["metadata"]["name"]
        # maxUnavailable, so a single-replica overlay still lets a node drain.
        assert matching[0]["spec"]["maxUnavailable"] == 1


def test_network_policies_open_what_the_services_use(resources: tuple[Resource, ...]) -> None:
    policies = of_kind(resources, "NetworkPolicy")
    workloads = {
        d["metadata"]["name"]: d["spec"]["template"]["metadata"]["labels"]
        for d in of_kind(resources, WORKLOAD)
    }

    def rules_for(workload: str, direction: str) -> list[dict[str, Any]]:
        rules = []
        for policy in policies:
            if selects(policy["spec"]["podSelector"]["matchLabels"], workloads[workload]):
                rules += policy["spec"].get(direction, [])
        return rules

    def open_ports(rules: list[dict[str, Any]], anyone: bool) -> set[object]:
        return {
            port["port"]
            for rule in rules
            if not anyone or "from" not in rule
            for port in rule.get("ports", [])
        }

    for name in workloads:
        # Every relaystream pod is covered (default deny), resolves names and reaches Kafka.
        assert any(
            selects(p["spec"]["podSelector"]["matchLabels"], workloads[name])
            and set(p["spec"]["policyTypes"]) == {"Ingress", "Egress"}
            for p in policies
        )
        assert {53, 9092} <= open_ports(rules_for(name, "egress"), anyone=False)
    assert {"smtp", "http-api"} <= open_ports(rules_for("relaystream-ingest", "ingress"), True)
    assert 25 in open_ports(rules_for("relaystream-delivery", "egress"), anyone=False)
    # Named ports in policies exist on the pods they select.
    for policy in policies:
        for direction in ("ingress", "egress"):
            for rule in policy["spec"].get(direction, []):
                for port in rule.get("ports", []):
                    if isinstance(port["port"], str):
                        selected = [
                            service_workload(resources, n.removeprefix("relaystream-"))
                            for n, labels in workloads.items()
                            if selects(policy["spec"]["podSelector"]["matchLabels"], labels)
                        ]
                        for workload in selected:
                            assert port["port"] in {p["name"] for p in container(workload)["ports"]}


def test_images_are_set_per_overlay() -> None:
    images = {
        overlay: {container(d)["image"] for d in of_kind(render_overlay(overlay), WORKLOAD)}
        for overlay in OVERLAYS
    }
    assert images["dev"] == {"relaystream:dev"}
    (prod_image,) = images["prod"]
    assert prod_image.endswith("/relaystream:0.1.0")
    assert images["strimzi"] == images["prod"]


def test_prod_exposes_smtp_keeping_client_addresses() -> None:
    smtp = named(render_overlay("prod"), "Service", "relaystream-smtp")
    assert smtp["spec"]["type"] == "LoadBalancer"
    assert smtp["spec"]["externalTrafficPolicy"] == "Local"
    labels = named(render_overlay("prod"), "Namespace", NAMESPACE)["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"


@pytest.mark.parametrize("overlay_with_kafka", ["dev", "strimzi"])
def test_kafka_aborts_timed_out_transactions_as_often_as_routing_assumes(
    overlay_with_kafka: str,
) -> None:
    (kafka,) = of_kind(render_overlay(overlay_with_kafka), "Kafka")
    config = kafka["spec"]["kafka"]["config"]
    assert int(config[ABORT_CHECK_INTERVAL]) <= BROKER_ABORT_CHECK_INTERVAL_MS
