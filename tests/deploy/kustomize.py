"""
A small Python C{kustomize build}, for the subset of kustomize that
C{deploy/} uses, so CI can check the rendered manifests where neither
kustomize nor kubectl is installed.

Supported in a C{kustomization.yaml}: C{resources} (files, and directories
holding a kustomization, recursively), C{components} (directories holding
a C{Component}), C{configMapGenerator} (files, C{options.labels},
C{behavior}), C{patches} (strategic-merge patch files, each matched to the
resource of its apiVersion, kind and name, with C{$patch: delete} for a
whole resource or a list item; or JSON patch files with a C{target} kind
and name), C{namespace} and C{images}.  Anything else is refused with
L{KustomizeError} rather than ignored, so the manifests cannot drift out of
what this renders faithfully.  Where kubectl is installed, the tests
compare this output with C{kubectl kustomize}.

Like kustomize, one kustomization accumulates its resources, then its
components (each adding its resources and transforming everything so
far), then its generators' ConfigMaps, then runs its transformers in this
order: patches, namespace, images.  Generated ConfigMaps get their hash
suffix at the very end, and the pod templates naming them follow; the
output is sorted as C{kustomize build}'s default (legacy) order sorts it.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "KustomizeError",
    "Manifest",
    "build",
    "config_map_hash",
    "json_patch",
    "load_documents",
    "merge",
    "resource_id",
    "set_image",
]

Manifest = dict[str, Any]

SUPPORTED_KEYS = frozenset(
    {"apiVersion", "kind", "namespace", "resources", "components", "configMapGenerator", "patches", "images"}
)

# Kinds that have no namespace: kustomize's namespace transformer leaves
# them alone, except Namespace objects, which it renames.
CLUSTER_SCOPED = frozenset(
    {
        "APIService",
        "ClusterRole",
        "ClusterRoleBinding",
        "CSIDriver",
        "CustomResourceDefinition",
        "IngressClass",
        "MutatingWebhookConfiguration",
        "Namespace",
        "PersistentVolume",
        "PriorityClass",
        "RuntimeClass",
        "StorageClass",
        "ValidatingWebhookConfiguration",
    }
)
# The namespace transformer also rewrites these (subjects, webhook
# services); this renderer does not, so it refuses them.
_NAMESPACE_REFERENCES = frozenset(
    {"RoleBinding", "ClusterRoleBinding", "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"}
)

# Strategic merge keys of the lists the patches may touch (from the
# Kubernetes API's patchMergeKey); other lists are replaced whole.
_MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "volumes": "name",
    "env": "name",
    "volumeMounts": "mountPath",
    "imagePullSecrets": "name",
    "volumeClaimTemplates": "metadata.name",
}

# kustomize's legacy resource order: these kinds first, in this order,
# then every other kind, then the webhook configurations; within one kind,
# by group/version/kind, then namespace and name.
_ORDER_FIRST = (
    "Namespace",
    "ResourceQuota",
    "StorageClass",
    "CustomResourceDefinition",
    "ServiceAccount",
    "PodSecurityPolicy",
    "Role",
    "ClusterRole",
    "RoleBinding",
    "ClusterRoleBinding",
    "ConfigMap",
    "Secret",
    "Endpoints",
    "Service",
    "LimitRange",
    "PriorityClass",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "Deployment",
    "StatefulSet",
    "CronJob",
    "PodDisruptionBudget",
)
_ORDER_LAST = ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration")


class KustomizeError(Exception):
    """
    The kustomization cannot be built (as kustomize would fail), or uses
    what this renderer does not implement.
    """


def build(directory: Path) -> list[Manifest]:
    """
    Render the kustomization in C{directory} as C{kustomize build} does.
    """
    resources = _build(directory.resolve(), ())
    # As kustomize does last, once for the whole build: generated
    # ConfigMaps get the hash of their final content, and what refers to
    # them follows the new name.
    _add_hash_suffixes(resources)
    return sorted(resources, key=_legacy_order)


def load_documents(path: Path) -> list[Manifest]:
    """
    The YAML documents of a file, empty ones left out; each must be a mapping.
    """
    try:
        documents = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
    except (OSError, yaml.YAMLError) as e:
        raise KustomizeError(f"{path}: {e}") from None
    found = []
    for document in documents:
        if document is None:
            continue
        if not isinstance(document, dict):
            raise KustomizeError(f"{path}: a document is not a mapping")
        found.append(document)
    return found


def resource_id(manifest: Manifest) -> tuple[str, str, str, str]:
    """
    What identifies a resource: apiVersion, kind, namespace and name.
    """
    metadata = manifest.get("metadata") or {}
    return (
        str(manifest.get("apiVersion", "")),
        str(manifest.get("kind", "")),
        str(metadata.get("namespace", "")),
        str(metadata.get("name", "")),
    )


def _build(directory: Path, seen: tuple[Path, ...], base: list[Manifest] | None = None) -> list[Manifest]:
    """
    Accumulate a kustomization (or, given the C{base} it applies to, a
    component): its resources, then its components, then its generators,
    then its transformers over all of these.
    """
    if directory in seen:
        raise KustomizeError(f"{directory}: kustomization includes itself")
    path = directory / "kustomization.yaml"
    if not path.is_file():
        raise KustomizeError(f"{directory}: no kustomization.yaml")
    documents = load_documents(path)
    if len(documents) != 1:
        raise KustomizeError(f"{path}: must hold one document")
    spec = documents[0]
    unknown = set(spec) - SUPPORTED_KEYS
    if unknown:
        raise KustomizeError(f"{path}: not supported by this renderer: {', '.join(sorted(unknown))}")
    expected = ("kustomize.config.k8s.io/v1beta1", "Kustomization")
    if base is not None:
        expected = ("kustomize.config.k8s.io/v1alpha1", "Component")
    if (spec.get("apiVersion", expected[0]), spec.get("kind", expected[1])) != expected:
        raise KustomizeError(f"{path}: must be a {expected[1]} here ({expected[0]})")
    resources: list[Manifest] = base if base is not None else []
    for entry in spec.get("resources") or ():
        target = (directory / str(entry)).resolve()
        if target.is_dir():
            found = _build(target, (*seen, directory))
        elif target.is_file():
            _within(directory, target, path)
            found = load_documents(target)
        else:
            raise KustomizeError(f"{path}: resource {entry} not found")
        for manifest in found:
            _add(resources, manifest, f"{path}: {entry}")
    for entry in spec.get("components") or ():
        target = (directory / str(entry)).resolve()
        if not target.is_dir():
            raise KustomizeError(f"{path}: component {entry} is not a directory")
        resources = _build(target, (*seen, directory), resources)
    for generator in spec.get("configMapGenerator") or ():
        _generate_config_map(resources, generator, directory, path)
    for patch in spec.get("patches") or ():
        resources = _patch(resources, patch, directory, path)
    namespace = spec.get("namespace")
    if namespace is not None:
        for manifest in resources:
            _set_namespace(manifest, str(namespace))
    for image in spec.get("images") or ():
        for manifest in resources:
            set_image(manifest, image)
    return resources


def _patch(resources: list[Manifest], patch: Any, directory: Path, where: Path) -> list[Manifest]:
    """
    One entry of C{patches}: a strategic-merge patch file (its documents
    name their targets), or with C{target} a JSON patch (RFC 6902) file.
    """
    if not isinstance(patch, dict) or "path" not in patch or not set(patch) <= {"path", "target"}:
        raise KustomizeError(f"{where}: only patches given by path (and target) are supported, got {patch!r}")
    target = (directory / str(patch["path"])).resolve()
    _within(directory, target, where)
    if not target.is_file():
        raise KustomizeError(f"{where}: patch {patch['path']} not found")
    if "target" not in patch:
        for document in load_documents(target):
            resources = _apply_patch(resources, document, target)
        return resources
    selector = patch["target"]
    if not isinstance(selector, dict) or not set(selector) <= {"kind", "name"} or "kind" not in selector:
        raise KustomizeError(f"{where}: a patch target is a kind and a name, got {selector!r}")
    try:
        operations = yaml.safe_load(target.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise KustomizeError(f"{target}: {e}") from None
    if not isinstance(operations, list):
        raise KustomizeError(f"{target}: a patch with a target must be a JSON patch (a list of operations)")
    matched = [
        index
        for index, manifest in enumerate(resources)
        if manifest["kind"] == selector["kind"]
        and selector.get("name", manifest["metadata"]["name"]) == manifest["metadata"]["name"]
    ]
    if not matched:
        raise KustomizeError(f"{target}: no resource matches the target {selector!r}")
    result = list(resources)
    for index in matched:
        result[index] = json_patch(resources[index], operations, str(target))
    return result


def json_patch(document: Any, operations: list[Any], where: str = "JSON patch") -> Any:
    """
    Apply a JSON patch (RFC 6902: C{add}, C{remove}, C{replace} and
    C{test}) to a copy of C{document}.
    """
    result = copy.deepcopy(document)
    for operation in operations:
        if not isinstance(operation, dict) or operation.get("op") not in {"add", "remove", "replace", "test"}:
            raise KustomizeError(f"{where}: operation not supported: {operation!r}")
        op, pointer = operation["op"], str(operation.get("path", ""))
        if not pointer.startswith("/"):
            raise KustomizeError(f"{where}: {op}: path must be a JSON pointer, got {pointer!r}")
        *parents, last = [part.replace("~1", "/").replace("~0", "~") for part in pointer[1:].split("/")]
        container = result
        for part in parents:
            container = _step(container, part, pointer, where)
        if op == "test":
            if _step(container, last, pointer, where) != operation.get("value"):
                raise KustomizeError(f"{where}: test failed at {pointer}")
        elif isinstance(container, list):
            index = len(container) if (op == "add" and last == "-") else _index(container, last, op == "add", pointer)
            if op == "add":
                container.insert(index, copy.deepcopy(operation["value"]))
            elif op == "remove":
                del container[index]
            else:
                container[index] = copy.deepcopy(operation["value"])
        elif isinstance(container, dict):
            if op != "add" and last not in container:
                raise KustomizeError(f"{where}: {op}: nothing at {pointer}")
            if op == "remove":
                del container[last]
            else:
                container[last] = copy.deepcopy(operation["value"])
        else:
            raise KustomizeError(f"{where}: {op}: {pointer} is inside a scalar")
    return result


def _index(items: list[Any], part: str, adding: bool, pointer: str) -> int:
    if not part.isdigit() or int(part) > len(items) - (0 if adding else 1):
        raise KustomizeError(f"{pointer}: no list index {part}")
    return int(part)


def _step(container: Any, part: str, pointer: str, where: str) -> Any:
    if isinstance(container, list):
        return container[_index(container, part, False, pointer)]
    if isinstance(container, dict) and part in container:
        return container[part]
    raise KustomizeError(f"{where}: nothing at {pointer}")


# Marks a ConfigMap this build generated, for the hash suffix at its end.
_GENERATED = "$generated"


def _generate_config_map(resources: list[Manifest], generator: Any, directory: Path, where: Path) -> None:
    """
    One C{configMapGenerator} entry: a ConfigMap of files (C{files}: a
    name, or C{key=name}) with C{options.labels}, created, or with
    C{behavior} replacing or merging into the one of that name so far.
    """
    if not isinstance(generator, dict) or not set(generator) <= {"name", "files", "behavior", "options"}:
        raise KustomizeError(f"{where}: configMapGenerator entry not supported: {generator!r}")
    options = generator.get("options") or {}
    if not set(options) <= {"labels"}:
        raise KustomizeError(f"{where}: configMapGenerator options not supported: {sorted(options)}")
    data = {}
    for entry in generator.get("files") or ():
        key, _, name = str(entry).rpartition("=")
        file = (directory / name).resolve()
        _within(directory, file, where)
        if not file.is_file():
            raise KustomizeError(f"{where}: configMapGenerator file {name} not found")
        data[key or file.name] = file.read_text(encoding="utf-8")
    name = str(generator["name"])
    generated: Manifest = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, **({"labels": dict(options["labels"])} if "labels" in options else {})},
        "data": data,
        _GENERATED: True,
    }
    behavior = generator.get("behavior", "create")
    existing = [m for m in resources if m["kind"] == "ConfigMap" and m["metadata"]["name"] == name]
    if behavior == "create":
        _add(resources, generated, f"{where}: configMapGenerator {name}")
        return
    if behavior not in ("replace", "merge") or len(existing) != 1:
        raise KustomizeError(
            f"{where}: configMapGenerator {name}: behavior {behavior} needs one ConfigMap of that name"
        )
    [old] = existing
    metadata = old["metadata"]
    for key in ("labels", "annotations"):
        if key in generated["metadata"] or key in metadata:
            metadata[key] = {**metadata.get(key, {}), **generated["metadata"].get(key, {})}
    old["data"] = data if behavior == "replace" else {**old.get("data", {}), **data}


def config_map_hash(manifest: Manifest) -> str:
    """
    kustomize's name suffix for a ConfigMap: the first ten hex digits of
    the SHA-256 of its JSON encoding as Go writes it (keys sorted, <, > and
    & escaped), some digits swapped for letters so it never reads as a
    number.  (kustomize looks its name up under a key that never matches,
    so the name it hashes is always empty.)
    """
    encoded = json.dumps(
        {"kind": "ConfigMap", "name": "", "data": manifest.get("data") or {}},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    for character, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        encoded = encoded.replace(character, escaped)
    encoded = encoded.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    digest = hashlib.sha256(encoded.encode("utf-8")).hexdigest()[:10]
    return digest.translate(str.maketrans("013ae", "ghkmt"))


def _add_hash_suffixes(resources: list[Manifest]) -> None:
    renamed: dict[tuple[str, str], str] = {}
    for manifest in resources:
        if manifest.pop(_GENERATED, False):
            metadata = manifest["metadata"]
            new = f"{metadata['name']}-{config_map_hash(manifest)}"
            renamed[(str(metadata.get("namespace", "")), metadata["name"])] = new
            metadata["name"] = new
    for manifest in resources:
        namespace = str(manifest["metadata"].get("namespace", ""))
        for reference in _config_map_references(manifest):
            name = str(reference.get("name", ""))
            reference["name"] = renamed.get((namespace, name), name)


def _config_map_references(value: Any) -> Iterable[dict[str, Any]]:
    """
    Where a pod template names a ConfigMap: volumes (projected ones
    included), C{configMapKeyRef} and C{configMapRef}.
    """
    if isinstance(value, dict):
        for key, item in value.items():
            if key in ("configMap", "configMapKeyRef", "configMapRef") and isinstance(item, dict):
                yield item
            else:
                yield from _config_map_references(item)
    elif isinstance(value, list):
        for item in value:
            yield from _config_map_references(item)


def _within(directory: Path, target: Path, where: Path) -> None:
    # kustomize's default load restrictor: files only from the
    # kustomization's own directory tree (other trees as kustomizations).
    if not target.is_relative_to(directory):
        raise KustomizeError(f"{where}: {target} is not in or below {directory}")


def _add(resources: list[Manifest], manifest: Manifest, where: str) -> None:
    for key in ("apiVersion", "kind"):
        if not manifest.get(key):
            raise KustomizeError(f"{where}: a resource has no {key}")
    if not (manifest.get("metadata") or {}).get("name"):
        raise KustomizeError(f"{where}: a resource has no metadata.name")
    if any(resource_id(m) == resource_id(manifest) for m in resources):
        raise KustomizeError(f"{where}: {resource_id(manifest)} is already a resource")
    resources.append(manifest)


def _apply_patch(resources: list[Manifest], patch: Manifest, where: Path) -> list[Manifest]:
    api_version, kind, namespace, name = resource_id(patch)
    matches = [
        index
        for index, manifest in enumerate(resources)
        if resource_id(manifest)[:2] == (api_version, kind)
        and resource_id(manifest)[3] == name
        and (not namespace or resource_id(manifest)[2] == namespace)
    ]
    if len(matches) != 1:
        found = "no resource" if not matches else "several resources"
        raise KustomizeError(f"{where}: {found} to patch for {kind} {name}")
    [index] = matches
    patch = dict(patch)
    directive = patch.pop("$patch", None)
    if directive == "delete":
        return resources[:index] + resources[index + 1 :]
    if directive is not None:
        raise KustomizeError(f"{where}: $patch: {directive} is not supported")
    result = list(resources)
    result[index] = merge(resources[index], patch)
    return result


def merge(original: Any, patch: Any, field: str = "") -> Any:
    """
    A strategic merge of C{patch} into C{original}: mappings merge key by
    key (C{null} deletes a key), lists of known merge keys (containers by
    name, volume mounts by mount path, …) merge item by item (an item with
    C{$patch: delete} is removed), every other value is replaced.
    """
    if isinstance(original, dict) and isinstance(patch, dict):
        result = copy.deepcopy(original)
        for key, value in patch.items():
            if key.startswith("$"):
                raise KustomizeError(f"{key} is not supported")
            if value is None:
                result.pop(key, None)
            elif key in result:
                result[key] = merge(result[key], value, key)
            else:
                result[key] = copy.deepcopy(_without_directives(value))
        return result
    if isinstance(original, list) and isinstance(patch, list) and field in _MERGE_KEYS:
        return _merge_list(original, patch, _MERGE_KEYS[field])
    if (
        isinstance(original, list)
        and isinstance(patch, list)
        and field == "ports"
        and _all_have(patch, "containerPort")
    ):
        return _merge_list(original, patch, "containerPort")
    return copy.deepcopy(_without_directives(patch))


def _all_have(items: list[Any], key: str) -> bool:
    return all(isinstance(item, dict) and key in item for item in items)


def _merge_key(item: Any, key: str) -> Any:
    for part in key.split("."):
        item = item.get(part) if isinstance(item, dict) else None
    return item


def _merge_list(original: list[Any], patch: list[Any], key: str) -> list[Any]:
    result = copy.deepcopy(original)
    for item in patch:
        if not isinstance(item, dict) or _merge_key(item, key) is None:
            raise KustomizeError(f"list items merged by {key} must all have one")
        item = dict(item)
        directive = item.pop("$patch", None)
        positions = [i for i, old in enumerate(result) if _merge_key(old, key) == _merge_key(item, key)]
        if directive == "delete":
            result = [old for i, old in enumerate(result) if i not in positions]
        elif directive is not None:
            raise KustomizeError(f"$patch: {directive} is not supported")
        elif positions:
            result[positions[0]] = merge(result[positions[0]], item)
        else:
            result.append(copy.deepcopy(item))
    return result


def _without_directives(value: Any) -> Any:
    if isinstance(value, dict):
        if any(str(key).startswith("$") for key in value):
            raise KustomizeError(f"directives are only supported on existing items: {value!r}")
        return {key: _without_directives(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_without_directives(item) for item in value]
    return value


def _set_namespace(manifest: Manifest, namespace: str) -> None:
    kind = manifest["kind"]
    if kind in _NAMESPACE_REFERENCES:
        raise KustomizeError(f"{kind}: namespace references are not rewritten by this renderer")
    metadata = manifest.setdefault("metadata", {})
    if kind == "Namespace":
        metadata["name"] = namespace
    elif kind not in CLUSTER_SCOPED:
        metadata["namespace"] = namespace


def _split_image(image: str) -> tuple[str, str | None, str | None]:
    """
    An image reference as name, tag and digest.
    """
    digest = None
    if "@" in image:
        image, digest = image.split("@", 1)
    tag = None
    slash = image.rfind("/")
    colon = image.rfind(":")
    if colon > slash:
        image, tag = image[:colon], image[colon + 1 :]
    return image, tag, digest


def set_image(manifest: Manifest, image: dict[str, Any]) -> None:
    """
    kustomize's C{images} entry: every container (and init container) whose
    image is C{name} gets C{newName}, C{newTag} or C{digest}.
    """
    unknown = set(image) - {"name", "newName", "newTag", "digest"}
    if unknown or "name" not in image:
        raise KustomizeError(f"images entry not supported: {image!r}")
    for container in _containers(manifest):
        reference = container.get("image")
        if not isinstance(reference, str):
            continue
        name, tag, digest = _split_image(reference)
        if name != image["name"]:
            continue
        name = str(image.get("newName", name))
        if "digest" in image:
            container["image"] = f"{name}@{image['digest']}"
            continue
        if "newTag" in image:
            tag, digest = str(image["newTag"]), None
        container["image"] = name + (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")


def _containers(value: Any) -> Iterable[dict[str, Any]]:
    if isinstance(value, dict):
        for key, item in value.items():
            if key in ("containers", "initContainers") and isinstance(item, list):
                yield from (c for c in item if isinstance(c, dict))
            else:
                yield from _containers(item)
    elif isinstance(value, list):
        for item in value:
            yield from _containers(item)


def _gvk(manifest: Manifest) -> str:
    api_version = str(manifest.get("apiVersion", ""))
    group, _, version = api_version.rpartition("/")
    return "_".join((group or "~G", version or "~V", str(manifest.get("kind") or "~K")))


def _legacy_order(manifest: Manifest) -> tuple[int, str, str, str]:
    kind = manifest["kind"]
    if kind in _ORDER_FIRST:
        rank = _ORDER_FIRST.index(kind) - len(_ORDER_FIRST)
    elif kind in _ORDER_LAST:
        rank = _ORDER_LAST.index(kind) + 1
    else:
        rank = 0
    _, _, namespace, name = resource_id(manifest)
    return rank, _gvk(manifest), namespace or "~X", name
