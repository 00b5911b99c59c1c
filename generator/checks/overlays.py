"""Overlays as the real kustomize builds them (``kubectl kustomize``, kustomize v5).

- ``build``: the documents of an overlay; any failure, kubectl missing included, is one
  ``KustomizeError`` naming the overlay and kustomize's own error.
- ``trace``: which of the overlay's targeted patches and images entries changed nothing,
  which kustomize itself passes over in silence.
"""

import json
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import yaml

KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
KUBECTL_HELP = (
    "install it from https://kubernetes.io/docs/tasks/tools/ "
    "(Keel builds overlays with `kubectl kustomize`, kustomize v5)"
)
KUSTOMIZE_TIMEOUT = 120
# A marked build tags what each targeted patch matched with PROBE_ANNOTATION-<n> and every
# image an images entry changed with the tag PROBE_TAG-<n>.
PROBE_ANNOTATION = "keel.dev/probe-patch"
PROBE_TAG = "keel-probe-image"
PROBED_IMAGE = re.compile(rf":{PROBE_TAG}-(\d+)(?:@|$)")


class KustomizeError(Exception):
    """kustomize cannot build an overlay (or cannot run): names the overlay and the reason."""

    def __init__(self, overlay: Path | str, reason: str):
        super().__init__(f"kubectl kustomize {overlay}: {reason}")
        self.overlay = overlay
        self.reason = reason


class KubectlMissing(KustomizeError):
    """No kubectl on PATH: a problem of this machine, not of the service."""


def kustomization_file(directory: Path) -> Path | None:
    return next(
        (directory / name for name in KUSTOMIZATION_FILES if (directory / name).is_file()), None
    )


def build(overlay: Path) -> list[dict]:
    """The documents ``kubectl kustomize overlay`` prints."""
    return _documents(kustomize(overlay))


def kustomize(overlay: Path) -> str:
    """What ``kubectl kustomize overlay`` prints."""
    return _kustomize(Path(overlay), shown=overlay)


def _kustomize(directory: Path, *, shown: Path | str) -> str:
    try:
        result = subprocess.run(
            ["kubectl", "kustomize", str(directory)],
            capture_output=True,
            text=True,
            timeout=KUSTOMIZE_TIMEOUT,
        )
    except FileNotFoundError:
        raise KubectlMissing(shown, f"kubectl is missing: {KUBECTL_HELP}") from None
    except subprocess.TimeoutExpired:
        raise KustomizeError(shown, f"no output after {KUSTOMIZE_TIMEOUT} s") from None
    if result.returncode != 0:
        raise KustomizeError(shown, kustomize_reason(result.stderr))
    return result.stdout


def kustomize_reason(stderr: str) -> str:
    """kustomize's own error, without kubectl's log prefix (``E1123 ... run.go:72] ...``)."""
    quoted = re.search(r'err="((?:[^"\\]|\\.)*)"', stderr)
    if quoted:
        try:
            return json.loads(f'"{quoted.group(1)}"')
        except ValueError:
            return quoted.group(1)
    block = re.search(r"err=<\n(.*?)\n\s*>", stderr, re.S)
    lines = (block.group(1) if block else stderr).splitlines()
    lines = [line.strip() for line in lines if line.strip() and not line.startswith("# Warning")]
    if not lines:
        return "failed without a message"
    return " ".join(lines) if block else lines[-1]


def _documents(text: str) -> list[dict]:
    return [document for document in yaml.safe_load_all(text) if document]


@dataclass
class Trace:
    """What the overlay's own ``patches`` (with a target) and ``images`` entries changed, as
    kustomize reports it on a marked copy of the tree; the targets of patches that matched
    nothing and the names of images entries that changed no image."""

    kustomization: Path
    unmatched_patches: list[tuple[int, dict]] = field(default_factory=list)
    unused_images: list[str] = field(default_factory=list)


def trace(overlay: Path, root: Path) -> Trace:
    """Build a copy of ``root`` (which holds the overlay and its bases) in which the overlay's
    kustomization puts a marker patch with the same target before each targeted patch and
    gives each images entry a marker tag; kustomize's output shows what each one matched.
    Untargeted patches need no marker: kustomize refuses one that matches nothing."""
    overlay, root = Path(overlay).resolve(), Path(root).resolve()
    with tempfile.TemporaryDirectory(prefix="keel-kustomize-") as scratch:
        copy = Path(scratch) / root.name
        shutil.copytree(root, copy, symlinks=True)
        copied = copy / overlay.relative_to(root)
        path = kustomization_file(copied)
        if path is None:
            raise KustomizeError(overlay, "no kustomization.yaml")
        kustomization = yaml.safe_load(path.read_text()) or {}
        patches = kustomization.get("patches") or []
        targeted = {
            index: patch["target"]
            for index, patch in enumerate(patches)
            if isinstance(patch, dict) and patch.get("target")
        }
        marked = []
        for index, patch in enumerate(patches):
            if index in targeted:
                marked.append({"target": targeted[index], "patch": _marker(index)})
            marked.append(patch)
        images = kustomization.get("images") or []
        if marked:
            kustomization["patches"] = marked
        if images:
            kustomization["images"] = [
                _probe_image(index, image) for index, image in enumerate(images)
            ]
        path.write_text(yaml.safe_dump(kustomization, sort_keys=False))
        try:
            documents = _documents(_kustomize(copied, shown=overlay))
        except KubectlMissing:
            raise
        except KustomizeError as error:
            raise KustomizeError(
                overlay, f"the marked copy does not build: {error.reason}"
            ) from None
    matched = {
        int(key.rpartition("-")[2])
        for document in documents
        for key in annotations(document)
        if key.startswith(f"{PROBE_ANNOTATION}-")
    }
    changed = {
        int(found.group(1))
        for document in documents
        for text in strings(document)
        if (found := PROBED_IMAGE.search(text))
    }
    return Trace(
        kustomization_file(overlay) or overlay,
        [(index, target) for index, target in targeted.items() if index not in matched],
        [
            str(image.get("name"))
            for index, image in enumerate(images)
            if isinstance(image, dict) and index not in changed
        ],
    )


def _marker(index: int) -> str:
    # With a target, kustomize ignores the patch's own kind and name.
    return yaml.safe_dump(
        {
            "apiVersion": "keel.dev/v1",
            "kind": "Marker",
            "metadata": {"name": "marker", "annotations": {f"{PROBE_ANNOTATION}-{index}": ""}},
        }
    )


def _probe_image(index: int, image):
    if not isinstance(image, dict):
        return image
    probe = {key: value for key, value in image.items() if key != "digest"}
    return {**probe, "newTag": f"{PROBE_TAG}-{index}"}


def annotations(document: dict) -> dict:
    return (document.get("metadata") or {}).get("annotations") or {}


def strings(node) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from strings(value)
