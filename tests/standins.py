"""Local stand-ins for the base images a rendered service names, for machines where no
container registry answers.

    python -m tests.standins [NAMES...]     ensure them (default: all four), one line each

`ensure(names)` keeps an image that is already present, else pulls it (a registry that
answers means the official image, unchanged), else builds the stand-in in
tests/standins/<folder>/: its Dockerfile builds FROM a Debian rootfs made with
`debootstrap --variant=minbase` and `docker import`ed (an intermediate image,
keel-standin-rootfs:<folder>-<suite>), and says at its top which part of the official
image's contract it reproduces; tests/test_standins.py checks those claims on containers.

The version in a name is the version of the Debian package used (postgres:17-trixie is
trixie's postgresql-17); a suite whose package has another version fails the build. A built
stand-in is labelled with the sha256 of its build context, so a changed folder is rebuilt
next time and an unchanged one reused. Building needs root (debootstrap) and Debian's mirror.
"""

import hashlib
import json
import os
import platform
import re
import shutil
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import yaml

FOLDERS = Path(__file__).parent / "standins"
MIRROR = "http://deb.debian.org/debian"
SUITES = ("bullseye", "bookworm", "trixie", "forky", "sid")  # what a tag may name
RABBITMQ_SUITE = "sid"  # trixie has 4.0; sid follows the 4.x releases
LABEL = "keel.standin"  # sha256 of the build context
PACKAGE_LABEL = "keel.debian"  # "<package>=<Debian version>" whose version the name promises


def rendered_names() -> dict[str, str]:
    """The images a service rendered from this checkout names, and each one's stand-in
    folder: python and uv from template/Dockerfile, postgres and rabbitmq from copier.yml's
    engines as template/compose.yaml.jinja spells them."""
    root = FOLDERS.parents[1]
    engines = yaml.safe_load((root / "copier.yml").read_text())["engines"]["default"]
    dockerfile = (root / "template" / "Dockerfile").read_text()
    return {
        re.search(r"^ARG PYTHON_IMAGE=(\S+)", dockerfile, re.MULTILINE)[1]: "python",
        re.search(r"COPY --from=(ghcr\.io/astral-sh/uv:\S+) ", dockerfile)[1]: "uv",
        f"postgres:{engines['postgres']}-trixie": "postgres",
        f"rabbitmq:{engines['rabbitmq']}-management": "rabbitmq",
    }


#: python:3.11-slim-bookworm, ghcr.io/astral-sh/uv:0.13.9, postgres:17-trixie and
#: rabbitmq:4.3-management (today), each with the folder of its stand-in.
IMAGES = rendered_names()


class StandinError(Exception):
    """An image is missing and its stand-in cannot be built; the message says why."""


@dataclass
class Recipe:
    """How to build one name's stand-in."""

    folder: str
    version: str  # what the tag promises: "3.11", "0.13.9", "17", "4.3"
    suite: str | None = None  # Debian suite of the rootfs; None: FROM scratch
    package: str = ""  # the Debian package whose version must be `version`.x
    packages: tuple[str, ...] = ()  # debootstrap --include
    args: dict[str, str] = field(default_factory=dict)  # build args besides BASE


def recipe(name: str) -> Recipe:
    """The stand-in for NAME, read from its repository and tag."""
    repository, _, tag = name.rpartition(":")
    suites = "|".join(SUITES)
    if repository == "python" and (match := re.fullmatch(rf"(\d+\.\d+)-slim-({suites})", tag)):
        version, suite = match.groups()
        package = f"python{version}"
        return Recipe("python", version, suite, package, (package, "ca-certificates"),
                      {"PYTHON_VERSION": version})  # fmt: skip
    if repository == "ghcr.io/astral-sh/uv" and re.fullmatch(r"\d+\.\d+\.\d+", tag):
        return Recipe("uv", tag)
    if repository == "postgres" and (match := re.fullmatch(rf"(\d+)-({suites})", tag)):
        major, suite = match.groups()
        package = f"postgresql-{major}"
        return Recipe("postgres", major, suite, package, (package,), {"PG_MAJOR": major})
    if repository == "rabbitmq" and (match := re.fullmatch(r"(\d+\.\d+)-management", tag)):
        return Recipe("rabbitmq", match[1], RABBITMQ_SUITE, "rabbitmq-server", ("rabbitmq-server",))
    raise StandinError(
        f"{name} is not here, no registry answered and there is no stand-in for it "
        f"(stand-ins: python:X.Y-slim-SUITE, ghcr.io/astral-sh/uv:X.Y.Z, postgres:N-SUITE, "
        f"rabbitmq:X.Y-management; in {FOLDERS})"
    )


#: One ensure() at a time in a process: the suite's background container work and its
#: stand-in tests both ask, and the second finds what the first built.
ENSURING = threading.Lock()


def ensure(names: Iterable[str], log: Callable[[str], None] = print) -> dict[str, str]:
    """Make every image in NAMES exist locally: {name: "present" | "pulled" | "built"}.
    Stand-ins are built in parallel; every failure is reported together at the end."""
    with ENSURING:
        return _ensure(list(dict.fromkeys(names)), log)


def _ensure(names: list[str], log: Callable[[str], None]) -> dict[str, str]:
    lock = threading.Lock()

    def say(line: str) -> None:
        with lock:
            log(line)

    with ThreadPoolExecutor(max_workers=max(len(names), 1)) as pool:
        futures = {name: pool.submit(ensure_one, name, say) for name in names}
    failures = [f"{name}: {future.exception()}" for name, future in futures.items()
                if future.exception()]  # fmt: skip
    if failures:
        raise StandinError("\n".join(failures))
    return {name: future.result() for name, future in futures.items()}


def ensure_one(name: str, log: Callable[[str], None]) -> str:
    labels = image_labels(name)
    if labels is not None and LABEL not in labels:
        return "present"  # the official image, or one the user made
    if labels is not None and labels[LABEL] == digest(recipe(name)):
        return "present"  # a stand-in whose folder has not changed since
    try:
        pulled = docker("pull", name, check=False, timeout=600)
        reason = (pulled.stderr or pulled.stdout).strip().splitlines()[-1:] or ["no answer"]
    except subprocess.TimeoutExpired:
        pulled, reason = None, ["no answer in 600s"]
    if pulled and pulled.returncode == 0:
        return "pulled"
    log(f"==> {name}: no registry answered ({reason[-1]})")
    build(name, recipe(name), stale=labels is not None, log=log)
    return "built"


def build(name: str, plan: Recipe, stale: bool, log) -> None:
    args = dict(plan.args)
    labels = {LABEL: digest(plan)}
    if plan.suite:
        args["BASE"], labels[PACKAGE_LABEL] = rootfs(name, plan, log)
    where = f"Debian {plan.suite} ({labels[PACKAGE_LABEL]})" if plan.suite else "scratch"
    log(f"==> building stand-in {name} from {where}")
    previous = image_id(name) if stale else None
    with tempfile.TemporaryDirectory(prefix="keel-standin-") as scratch:
        directory = context(plan, Path(scratch))
        docker("build", "--tag", name,
               *(f"--build-arg={key}={value}" for key, value in args.items()),
               *(f"--label={key}={value}" for key, value in labels.items()),
               directory, timeout=1800)  # fmt: skip
    if previous and previous != image_id(name):
        docker("rmi", previous, check=False)  # the stale stand-in, unless a container uses it
    log(f"==> built stand-in {name}")


# --- the build context: the folder's files and what it needs from this machine -------------


def digest(plan: Recipe) -> str:
    """sha256 of what the build context holds: the folder's files, the build args, and what
    is added from this machine (the CA bundle; uv's version, which fixes its binary)."""
    found = hashlib.sha256(repr(sorted(plan.args.items())).encode())
    folder = FOLDERS / plan.folder
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        found.update(f"{path.relative_to(folder)} {os.access(path, os.X_OK)}\n".encode())
        found.update(path.read_bytes())
    if plan.folder == "python":
        found.update(host_ca_bundle().read_bytes())
    if plan.folder == "uv":
        found.update(f"uv {plan.version} musllinux {platform.machine()}".encode())
    return found.hexdigest()


def context(plan: Recipe, scratch: Path) -> Path:
    """The build context, in SCRATCH/context: the folder and what it needs from here."""
    target = scratch / "context"
    shutil.copytree(FOLDERS / plan.folder, target)
    if plan.folder == "python":  # the host's CAs: uv in a `docker build` trusts its proxy
        shutil.copyfile(host_ca_bundle(), target / "ca-certificates.crt")
    if plan.folder == "uv":
        uv_binaries(plan.version, target, scratch)
    return target


def host_ca_bundle() -> Path:
    candidates = [os.environ.get("SSL_CERT_FILE"), "/etc/ssl/certs/ca-certificates.crt",
                  ssl.get_default_verify_paths().cafile]  # fmt: skip
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    raise StandinError("no CA bundle on this machine (set SSL_CERT_FILE)")


def uv_binaries(version: str, target: Path, scratch: Path) -> None:
    """uv and uvx as the official image has them: the static (musl) build, from PyPI's
    musllinux wheel of that version."""
    wheels = scratch / "wheels"
    run(sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
        f"uv=={version}", "--no-deps", "--only-binary=:all:",
        f"--platform=musllinux_1_1_{platform.machine()}", "--dest", wheels)  # fmt: skip
    with zipfile.ZipFile(next(wheels.glob("*.whl"))) as wheel:
        for binary in ("uv", "uvx"):
            (target / binary).write_bytes(wheel.read(f"uv-{version}.data/scripts/{binary}"))
            (target / binary).chmod(0o755)


# --- the Debian rootfs -----------------------------------------------------------------------


def rootfs(name: str, plan: Recipe, log) -> tuple[str, str]:
    """The imported rootfs image for PLAN (made once, then reused) and the
    "<package>=<version>" it holds."""
    key = hashlib.sha256(f"{MIRROR} {plan.suite} {sorted(plan.packages)}".encode()).hexdigest()
    image = f"keel-standin-rootfs:{plan.folder}-{plan.suite}"
    labels = image_labels(image) or {}
    if labels.get("keel.rootfs") == key:
        return image, checked(name, plan, labels[PACKAGE_LABEL].split("=", 1)[1])
    log(f"==> debootstrap Debian {plan.suite} with {', '.join(plan.packages)} for {name}")
    root = Path(tempfile.mkdtemp(prefix="keel-rootfs-", dir="/var/tmp"))
    try:
        run("debootstrap", "--variant=minbase", f"--include={','.join(plan.packages)}",
            plan.suite, root, MIRROR, timeout=1800)  # fmt: skip
        version = run("dpkg-query", f"--admindir={root}/var/lib/dpkg", "--show",
                      "--showformat=${Version}", plan.package).stdout  # fmt: skip
        found = checked(name, plan, version)
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for path in (root / junk).glob("*"):
                if path.is_file():
                    path.unlink()
        for leaked in ("etc/hostname", "etc/resolv.conf"):  # the build host's
            (root / leaked).unlink(missing_ok=True)
        tar = subprocess.Popen(["tar", "-C", root, "-c", "."], stdout=subprocess.PIPE)
        docker("import", "--change", f"LABEL keel.rootfs={key}",
               "--change", f"LABEL {PACKAGE_LABEL}={plan.package}={version}",
               "-", image, stdin=tar.stdout)  # fmt: skip
        if tar.wait() != 0:
            raise StandinError(f"tar of the {plan.suite} rootfs failed")
        return image, found
    finally:
        unmount_below(root)
        shutil.rmtree(root, ignore_errors=True)


def checked(name: str, plan: Recipe, version: str) -> str:
    """The "<package>=<version>" label, if VERSION (Debian's: 17.12-0+deb13u1, or with an
    epoch, 1:...) is the version NAME promises."""
    if not version.split(":", 1)[-1].startswith(f"{plan.version}."):
        raise StandinError(
            f"{name} promises {plan.package} {plan.version}.x, but Debian {plan.suite} has "
            f"{plan.package} {version}: pick the suite that has it in tests/standins.py"
        )
    return f"{plan.package}={version}"


def unmount_below(root: Path) -> None:
    """debootstrap leaves /proc and /sys mounted in the rootfs when it fails midway."""
    mounts = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()]
    for mount in sorted((m for m in mounts if m.startswith(f"{root}/")), reverse=True):
        subprocess.run(["umount", "--lazy", mount], check=False)


# --- docker ------------------------------------------------------------------------------------


def run(*command, check=True, timeout=600, stdin=None) -> subprocess.CompletedProcess:
    result = subprocess.run([str(part) for part in command], capture_output=True, text=True,
                            timeout=timeout, stdin=stdin)  # fmt: skip
    if check and result.returncode != 0:
        raise StandinError(
            f"{' '.join(map(str, command))} exited {result.returncode}\n"
            f"{result.stdout[-2000:]}{result.stderr[-2000:]}"
        )
    return result


def docker(*args, check=True, timeout=600, stdin=None) -> subprocess.CompletedProcess:
    return run("docker", *args, check=check, timeout=timeout, stdin=stdin)


def image_labels(name: str) -> dict[str, str] | None:
    """The labels of the local image NAME, or None when there is none."""
    found = docker("image", "inspect", "--format", "{{json .Config.Labels}}", name, check=False)
    if found.returncode != 0:
        return None
    return json.loads(found.stdout) or {}


def image_id(name: str) -> str | None:
    found = docker("image", "inspect", "--format", "{{.Id}}", name, check=False)
    return found.stdout.strip() if found.returncode == 0 else None


def main(argv: list[str]) -> int:
    names = argv or list(IMAGES)
    started = time.monotonic()
    try:
        results = ensure(names)
    except StandinError as error:
        print(f"tests.standins: {error}", file=sys.stderr)
        return 1
    for name, how in results.items():
        package = (image_labels(name) or {}).get(PACKAGE_LABEL, "")
        print(f"{name:30} {how:8} {package}".rstrip())
    print(f"{len(results)} images ready in {time.monotonic() - started:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
