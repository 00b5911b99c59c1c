"""A small kustomize-style assembler: what Keel's overlays use, and nothing silently more.

``assemble`` / ``build`` cover ``resources``, ``namespace``, ``images`` and ``patches``
(strategic-merge and JSON6902, with kustomize's target selectors). Any other key is
refused with a clear error, so an overlay can never mean more than Keel checks.
"""

import copy
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import yaml

KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
SUPPORTED_KEYS = {"apiVersion", "kind", "resources", "namespace", "images", "patches"}
PATCH_KEYS = {"path", "patch", "target"}
TARGET_KEYS = {"group", "version", "kind", "name", "namespace", "labelSelector"}
IMAGE_KEYS = {"name", "newName", "newTag"}
# Kinds the namespace transformer leaves alone, as kustomize does.
CLUSTER_SCOPED = {
    "APIService",
    "ClusterRole",
    "ClusterRoleBinding",
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
POD_TEMPLATE_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}


class KustomizeError(Exception):
    """The kustomization cannot be assembled; the message names the file and the entry."""


# --- assembly -------------------------------------------------------------------------------


@dataclass
class Patch:
    kustomization: Path
    index: int
    body: dict | list
    target: dict | None
    matched: int = 0

    @property
    def origin(self) -> str:
        return patch_origin(self.kustomization, self.index)

    def describes(self) -> str:
        if self.target:
            return ", ".join(f"{key}={value}" for key, value in sorted(self.target.items()))
        metadata = self.body.get("metadata") or {}
        return f"kind={self.body.get('kind')}, name={metadata.get('name')}"


def patch_origin(kustomization: Path, index: int) -> str:
    return f"{kustomization} patches[{index}]"


@dataclass
class Missing:
    kustomization: Path
    entry: str
    reason: str


@dataclass
class Assembly:
    documents: list[dict] = field(default_factory=list)
    patches: list[Patch] = field(default_factory=list)
    missing: list[Missing] = field(default_factory=list)
    # (kustomization, images entry) of every image override that changed no container.
    unused_images: list[tuple[Path, str]] = field(default_factory=list)


def assemble(kustomization_dir: Path) -> list[dict]:
    """The documents kustomize would build from this directory; missing files are errors."""
    assembly = build(kustomization_dir)
    if assembly.missing:
        raise KustomizeError(
            "; ".join(
                f"{item.kustomization} lists {item.entry}: {item.reason}"
                for item in assembly.missing
            )
        )
    return assembly.documents


def build(kustomization_dir: Path) -> Assembly:
    """Like ``assemble`` but lenient about missing files, which it records for rule K101."""
    directory = Path(kustomization_dir).resolve()
    path = kustomization_file(directory)
    if path is None:
        raise KustomizeError(f"{directory} has no kustomization.yaml")
    kustomization = yaml.safe_load(path.read_text()) or {}
    unsupported = sorted(set(kustomization) - SUPPORTED_KEYS)
    if unsupported:
        raise KustomizeError(
            f"{path}: unsupported kustomization key(s) {', '.join(unsupported)}; "
            f"Keel's assembler supports only {', '.join(sorted(SUPPORTED_KEYS))}"
        )
    assembly = Assembly()
    for entry in kustomization.get("resources") or []:
        _add_resource(assembly, directory, path, entry)
    _refuse_duplicates(assembly.documents, path)
    for index, spec in enumerate(kustomization.get("patches") or []):
        patch = _load_patch(assembly, directory, path, index, spec)
        if patch is not None:
            _apply_patch(assembly.documents, patch)
            assembly.patches.append(patch)
    if "namespace" in kustomization:
        _set_namespace(assembly.documents, kustomization["namespace"])
    for image in kustomization.get("images") or []:
        if not _set_image(assembly.documents, image, path):
            assembly.unused_images.append((path, image["name"]))
    return assembly


def kustomization_file(directory: Path) -> Path | None:
    return next(
        (directory / name for name in KUSTOMIZATION_FILES if (directory / name).is_file()), None
    )


def _add_resource(assembly: Assembly, directory: Path, path: Path, entry: str) -> None:
    if not isinstance(entry, str) or "://" in entry or entry.startswith(("github.com/", "git@")):
        raise KustomizeError(
            f"{path}: resource {entry!r} is not a local path; remote bases are unsupported"
        )
    target = (directory / entry).resolve()
    if target.is_dir():
        if kustomization_file(target) is None:
            assembly.missing.append(Missing(path, entry, "a directory without kustomization.yaml"))
            return
        nested = build(target)
        assembly.documents += nested.documents
        assembly.patches += nested.patches
        assembly.missing += nested.missing
        assembly.unused_images += nested.unused_images
    elif target.is_file():
        _inside(directory, target, path, entry)
        assembly.documents += load_documents(target)
    else:
        assembly.missing.append(Missing(path, entry, "no such file or directory"))


def _inside(directory: Path, target: Path, path: Path, entry: str) -> None:
    # kustomize's load restrictor: files (not bases) must live in or below the kustomization.
    if not target.is_relative_to(directory):
        raise KustomizeError(
            f"{path}: {entry} is outside {directory}; kustomize refuses files outside the "
            "kustomization root (list the directory that owns it as a base instead)"
        )


def load_documents(path: Path) -> list[dict]:
    documents = [document for document in yaml.safe_load_all(path.read_text()) if document]
    for document in documents:
        if not isinstance(document, dict) or "kind" not in document:
            raise KustomizeError(f"{path}: every document must be a mapping with a kind")
    return documents


def resource_id(document: dict) -> tuple[str, str, str, str]:
    metadata = document.get("metadata") or {}
    return (
        group_of(document),
        document.get("kind", ""),
        metadata.get("namespace") or "",
        metadata.get("name") or "",
    )


def _refuse_duplicates(documents: list[dict], path: Path) -> None:
    seen = set()
    for document in documents:
        key = resource_id(document)
        if key in seen:
            raise KustomizeError(f"{path}: {describe(document)} is listed twice")
        seen.add(key)


def group_of(document: dict) -> str:
    group, _, _ = str(document.get("apiVersion", "")).rpartition("/")
    return group


def version_of(document: dict) -> str:
    return str(document.get("apiVersion", "")).rpartition("/")[2]


def describe(document: dict) -> str:
    return f"{document.get('kind')}/{(document.get('metadata') or {}).get('name')}"


def _set_namespace(documents: list[dict], namespace: str) -> None:
    for document in documents:
        if document["kind"] not in CLUSTER_SCOPED:
            document.setdefault("metadata", {})["namespace"] = namespace


# --- images ---------------------------------------------------------------------------------


def split_image(image: str) -> tuple[str, str]:
    """("registry/name", ":tag@digest" or ":tag" or "@digest" or "")."""
    name, at, digest = image.partition("@")
    slash, colon = name.rfind("/"), name.rfind(":")
    tag = ""
    if colon > slash:
        name, tag = name[:colon], name[colon:]
    return name, tag + at + digest


def _set_image(documents: list[dict], image: dict, path: Path) -> int:
    """Apply one images entry; how many containers it changed."""
    unsupported = sorted(set(image) - IMAGE_KEYS)
    if unsupported or "name" not in image:
        raise KustomizeError(
            f"{path}: images entry {image} must have name and only {', '.join(sorted(IMAGE_KEYS))}"
        )
    changed = 0
    for container in all_containers(documents):
        name, suffix = split_image(str(container.get("image", "")))
        if name != image["name"]:
            continue
        if "newTag" in image:
            suffix = f":{image['newTag']}"
        container["image"] = f"{image.get('newName', name)}{suffix}"
        changed += 1
    return changed


# --- patches --------------------------------------------------------------------------------


def _load_patch(
    assembly: Assembly, directory: Path, path: Path, index: int, spec: dict
) -> Patch | None:
    origin = patch_origin(path, index)
    unsupported = sorted(set(spec) - PATCH_KEYS)
    if unsupported:
        raise KustomizeError(f"{origin}: unsupported key(s) {', '.join(unsupported)}")
    if ("path" in spec) == ("patch" in spec):
        raise KustomizeError(f"{origin}: give exactly one of path and patch")
    if "path" in spec:
        file = (directory / spec["path"]).resolve()
        if not file.is_file():
            assembly.missing.append(Missing(path, spec["path"], "no such file"))
            return None
        _inside(directory, file, path, spec["path"])
        text = file.read_text()
    else:
        text = spec["patch"]
    bodies = [body for body in yaml.safe_load_all(text) if body is not None]
    if len(bodies) != 1 or not isinstance(bodies[0], dict | list):
        raise KustomizeError(
            f"{origin}: a patch must be one YAML mapping or one list of operations"
        )
    target = spec.get("target")
    if target is not None:
        unsupported = sorted(set(target) - TARGET_KEYS)
        if unsupported:
            raise KustomizeError(f"{origin}: unsupported target key(s) {', '.join(unsupported)}")
        if "labelSelector" in target:
            parse_selector(target["labelSelector"])  # refuse a bad selector before matching
    elif isinstance(bodies[0], list):
        raise KustomizeError(f"{origin}: a JSON6902 patch (a list of operations) needs a target")
    return Patch(path, index, bodies[0], target)


def _apply_patch(documents: list[dict], patch: Patch) -> None:
    for position, document in enumerate(documents):
        if not _selected(document, patch):
            continue
        patch.matched += 1
        try:
            if isinstance(patch.body, list):
                documents[position] = json6902(document, patch.body)
            else:
                documents[position] = strategic_merge(document, _without_identity(patch.body))
        except (KeyError, IndexError, ValueError, TypeError) as error:
            raise KustomizeError(f"{patch.origin} on {describe(document)}: {error}") from None


def _selected(document: dict, patch: Patch) -> bool:
    metadata = document.get("metadata") or {}
    if patch.target is None:
        own = patch.body.get("metadata") or {}
        return (
            document.get("kind") == patch.body.get("kind")
            and metadata.get("name") == own.get("name")
            and own.get("namespace", metadata.get("namespace")) == metadata.get("namespace")
        )
    target = patch.target
    checks = (
        ("group", lambda value: group_of(document) == value),
        ("version", lambda value: version_of(document) == value),
        # kustomize reads kind, name and namespace as regular expressions anchored at both ends.
        ("kind", lambda value: re.fullmatch(value, document.get("kind", "")) is not None),
        ("name", lambda value: re.fullmatch(value, metadata.get("name") or "") is not None),
        (
            "namespace",
            lambda value: re.fullmatch(value, metadata.get("namespace") or "") is not None,
        ),
        ("labelSelector", lambda value: _labels_match(metadata.get("labels") or {}, value)),
    )
    return all(check(target[key]) for key, check in checks if key in target)


def _labels_match(labels: dict, selector: str) -> bool:
    return all(labels.get(key) == value for key, value in parse_selector(selector).items())


def parse_selector(selector: str) -> dict[str, str]:
    """``key=value[,key=value]``; set-based and inequality selectors are refused."""
    required = {}
    for requirement in selector.split(","):
        key, equals, value = requirement.strip().partition("=")
        if not equals or value.startswith("=") or key.endswith("!") or not key.strip():
            raise KustomizeError(
                f"labelSelector {selector!r}: only key=value[,key=value] is supported"
            )
        required[key.strip()] = value.strip()
    return required


def _without_identity(body: dict) -> dict:
    """The patch minus what only selects its target, so a targeted patch never renames it."""
    stripped = {key: value for key, value in body.items() if key not in ("apiVersion", "kind")}
    if "metadata" in stripped:
        metadata = {
            key: value
            for key, value in stripped["metadata"].items()
            if key not in ("name", "namespace")
        }
        stripped["metadata"] = metadata
        if not metadata:
            del stripped["metadata"]
    return stripped


def strategic_merge(base, patch):
    """Deep-merge ``patch`` into ``base``: maps merge, null deletes, lists of named maps merge
    by ``name`` (containers, env, volumes); any other list is replaced."""
    if isinstance(base, dict) and isinstance(patch, dict):
        directives = [key for key in patch if str(key).startswith("$")]
        if directives:
            raise ValueError(f"strategic-merge directive(s) {directives} are unsupported")
        merged = copy.deepcopy(base)
        for key, value in patch.items():
            if value is None:
                merged.pop(key, None)
            elif key in merged:
                merged[key] = strategic_merge(merged[key], value)
            else:
                merged[key] = copy.deepcopy(value)
        return merged
    if isinstance(base, list) and isinstance(patch, list) and _named(base) and _named(patch):
        merged = copy.deepcopy(base)
        positions = {item["name"]: index for index, item in enumerate(merged)}
        for item in patch:
            if item["name"] in positions:
                index = positions[item["name"]]
                merged[index] = strategic_merge(merged[index], item)
            else:
                merged.append(copy.deepcopy(item))
        return merged
    return copy.deepcopy(patch)


def _named(items: list) -> bool:
    return all(isinstance(item, dict) and "name" in item for item in items)


def json6902(document: dict, operations: list) -> dict:
    """Apply RFC 6902 add/replace/remove operations to a copy of ``document``."""
    patched = copy.deepcopy(document)
    for operation in operations:
        op, parts = operation.get("op"), pointer(operation.get("path", ""))
        if op not in ("add", "replace", "remove"):
            raise ValueError(f"JSON6902 op {op!r} is unsupported (use add, replace or remove)")
        if not parts:
            raise ValueError("a JSON6902 operation on the whole document is unsupported")
        parent = _walk(patched, parts[:-1], operation["path"])
        last = parts[-1]
        if isinstance(parent, list):
            _operate_on_list(parent, op, last, operation)
        elif isinstance(parent, dict):
            _operate_on_map(parent, op, last, operation)
        else:
            raise ValueError(f"{operation['path']}: the parent is neither a map nor a list")
    return patched


def pointer(path: str) -> list[str]:
    if path and not path.startswith("/"):
        raise ValueError(f"JSON pointer {path!r} must start with /")
    return [part.replace("~1", "/").replace("~0", "~") for part in path.split("/")[1:]]


def _walk(node, parts: list[str], path: str):
    for part in parts:
        if isinstance(node, list):
            node = node[_index(part, len(node) - 1, path)]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            raise ValueError(f"{path}: {part!r} does not exist")
    return node


def _index(part: str, highest: int, path: str) -> int:
    if not part.isdigit() or int(part) > highest:
        raise ValueError(f"{path}: {part!r} is not an index of the list")
    return int(part)


def _operate_on_list(parent: list, op: str, last: str, operation: dict) -> None:
    path = operation["path"]
    if op == "add":
        position = len(parent) if last == "-" else _index(last, len(parent), path)
        parent.insert(position, copy.deepcopy(operation["value"]))
    elif op == "replace":
        parent[_index(last, len(parent) - 1, path)] = copy.deepcopy(operation["value"])
    else:
        del parent[_index(last, len(parent) - 1, path)]


def _operate_on_map(parent: dict, op: str, last: str, operation: dict) -> None:
    if op != "add" and last not in parent:
        raise ValueError(f"{operation['path']}: cannot {op} a field that does not exist")
    if op == "remove":
        del parent[last]
    else:
        parent[last] = copy.deepcopy(operation["value"])


# --- pods and containers --------------------------------------------------------------------


def pod_spec(document: dict) -> dict | None:
    spec = document.get("spec") or {}
    kind = document.get("kind")
    if kind == "Pod":
        return spec
    if kind == "CronJob":
        spec = (spec.get("jobTemplate") or {}).get("spec") or {}
        return (spec.get("template") or {}).get("spec") or {}
    if kind in POD_TEMPLATE_KINDS:
        return (spec.get("template") or {}).get("spec") or {}
    return None


def containers(document: dict, *, init: bool = False) -> list[dict]:
    spec = pod_spec(document) or {}
    found = list(spec.get("containers") or [])
    return found + list(spec.get("initContainers") or []) if init else found


def all_containers(documents: Iterable[dict]) -> Iterator[dict]:
    for document in documents:
        yield from containers(document, init=True)
