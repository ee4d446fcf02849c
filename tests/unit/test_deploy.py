"""The delivery files agree with each other: the manifests probe what BentoML serves, run the image the
release workflow pushes, and the release checks images with what `make container-test` runs."""

from __future__ import annotations

import re

import yaml

from tests.fakes import REPO_ROOT

K8S = REPO_ROOT / "deploy" / "k8s"
RELEASE = (REPO_ROOT / ".github" / "workflows" / "release.yml").read_text()


def _load(path):
    return list(yaml.safe_load_all(path.read_text()))


def test_every_manifest_parses():
    for path in sorted(K8S.rglob("*.yaml")):
        assert all(document is not None for document in _load(path)), path


def test_the_deployment_probes_bentoml_and_runs_unprivileged():
    (deployment,) = _load(K8S / "deployment.yaml")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["ports"] == [{"name": "http", "containerPort": 3000}]
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "http"}
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False


def test_the_pod_is_locked_down_with_writable_paths_on_volumes():
    """A read-only root, the runtime's seccomp profile, no service-account token; /tmp and the feedback
    folder (where the service writes) are bounded volumes mounted where the service is told to write."""
    (deployment,) = _load(K8S / "deployment.yaml")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    mounts = {mount["name"]: mount["mountPath"] for mount in container["volumeMounts"]}
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    assert mounts.keys() == volumes.keys() == {"tmp", "feedback"}
    assert mounts["tmp"] == "/tmp"
    environment = {entry["name"]: entry["value"] for entry in container["env"]}
    assert environment["DIGITOPS_FEEDBACK_DIR"] == mounts["feedback"]
    assert all(volume["emptyDir"]["sizeLimit"] for volume in volumes.values())


def test_the_network_policy_lets_http_in_and_nothing_out():
    (deployment,) = _load(K8S / "deployment.yaml")
    (policy,) = _load(K8S / "networkpolicy.yaml")
    assert "networkpolicy.yaml" in yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= labels.items()
    assert sorted(policy["spec"]["policyTypes"]) == ["Egress", "Ingress"]
    assert policy["spec"]["egress"] == []  # no rule: every connection out is denied
    (rule,) = policy["spec"]["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": 3000}]


def test_the_feedback_volume_variant_replaces_the_ephemeral_folder_with_a_shared_claim():
    folder = K8S / "feedback-volume"
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    assert kustomization["resources"] == ["../", "claim.yaml"]
    (claim,) = _load(folder / "claim.yaml")
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]  # every replica writes it
    (deployment,) = _load(K8S / "deployment.yaml")
    names = [volume["name"] for volume in deployment["spec"]["template"]["spec"]["volumes"]]
    (operation,) = yaml.safe_load((folder / "volume.yaml").read_text())
    index = int(operation["path"].rsplit("/", 1)[1])
    assert operation["op"] == "replace" and names[index] == operation["value"]["name"] == "feedback"
    assert operation["value"]["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]


def test_the_service_and_autoscaler_point_at_the_deployment():
    (deployment,) = _load(K8S / "deployment.yaml")
    (service,) = _load(K8S / "service.yaml")
    (hpa,) = _load(K8S / "hpa.yaml")
    assert service["spec"]["selector"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert hpa["spec"]["minReplicas"] >= 2


def test_the_gpu_variant_requests_a_gpu():
    kustomization = yaml.safe_load((K8S / "gpu" / "kustomization.yaml").read_text())
    assert kustomization["resources"] == ["../"]
    patch = yaml.safe_load((K8S / "gpu" / "gpu.yaml").read_text())
    gpu_limit = "/spec/template/spec/containers/0/resources/limits/nvidia.com~1gpu"
    assert {"op": "add", "path": gpu_limit, "value": 1} in patch


def test_the_manifests_run_the_images_the_release_pushes():
    (deployment,) = _load(K8S / "deployment.yaml")
    logical = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    for folder in (K8S, K8S / "gpu"):
        images = yaml.safe_load((folder / "kustomization.yaml").read_text())["images"]
        assert [entry["name"] for entry in images] == [logical]
    image = re.search(r"^  IMAGE: (.+)$", RELEASE, re.MULTILINE).group(1)
    assert image.endswith("/digitops")
    assert f'kustomize edit set image "{logical}=$IMAGE:$VERSION"' in RELEASE
    assert f'kustomize edit set image "{logical}=$IMAGE:$VERSION-gpu"' in RELEASE
    for tag in ("$VERSION", "$VERSION-gpu"):
        assert f'"$IMAGE:{tag}"' in RELEASE  # built and checked under the tag that is pushed


def test_the_release_checks_images_as_make_container_test_does():
    makefile = (REPO_ROOT / "Makefile").read_text()
    assert "deploy/container_test.py" in makefile
    assert 'make container-test IMAGE="$IMAGE:$VERSION"' in RELEASE
    assert "deploy/container_test.py --engine docker" in RELEASE
    push = RELEASE.index("docker push")
    assert RELEASE.index("make container-test") < push and RELEASE.index("deploy/container_test.py") < push
    assert "environment: production" in RELEASE and "secrets.KUBE_CONFIG" in RELEASE


def test_the_containerfile_takes_its_base_image_as_an_argument_and_drops_root():
    containerfile = (REPO_ROOT / "Containerfile").read_text()
    assert re.search(r"^ARG BASE_IMAGE=", containerfile, re.MULTILINE)
    assert re.search(r"^FROM \$\{BASE_IMAGE\}", containerfile, re.MULTILINE)
    users = re.findall(r"^USER (\S+)", containerfile, re.MULTILINE)
    assert users[-1] == "bentoml"
    assert "--require-hashes" in containerfile
