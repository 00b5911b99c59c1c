"""Python, read with the AST (never imported): health views, Celery configuration and
tasks, settings, imports (L2, L5, L6a, L8, L9, L10, L11, L12b, L14, L15)."""

import ast
import re
from collections.abc import Iterator
from pathlib import Path

from ..findings import Finding, Tree
from . import rule

# Web layers a worker has no business importing (Django's ORM is not one of them).
WEB_FRAMEWORKS = (
    "fastapi",
    "starlette",
    "flask",
    "rest_framework",
    "django.http",
    "django.urls",
    "django.views",
    "django.shortcuts",
    "django.core.handlers",
)
GENERIC = "DATABASE_URL"
ROUTE_DECORATORS = {"get", "post", "put", "patch", "delete", "route", "api_route", "head"}
ASYNC_RESULT_CALLS = {"delay", "apply_async", "send_task"}


def modules(tree: Tree) -> Iterator[tuple[Path, ast.Module]]:
    for path in tree.python_files:
        module = tree.python(path)
        if module is not None:
            yield path, module


def functions(tree: Tree, module: ast.Module) -> Iterator[ast.FunctionDef | ast.AsyncFunctionDef]:
    for node in tree.walk(module):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield node


def decorator_names(function) -> set[str]:
    names = set()
    for decorator in function.decorator_list:
        target = decorator.func if isinstance(decorator, ast.Call) else decorator
        if isinstance(target, ast.Attribute):
            names.add(target.attr)
        elif isinstance(target, ast.Name):
            names.add(target.id)
    return names


def is_route(function) -> bool:
    return bool(decorator_names(function) & ROUTE_DECORATORS)


def is_task(function) -> bool:
    return bool(decorator_names(function) & {"task", "shared_task"})


def call_name(call: ast.Call) -> str:
    target = call.func
    if isinstance(target, ast.Attribute):
        return target.attr
    return target.id if isinstance(target, ast.Name) else ""


def finding(tree: Tree, path: Path, node: ast.AST, code: str, message: str) -> Finding:
    return Finding(tree.relative(path), node.lineno, node.col_offset + 1, code, message)


@rule(
    "L2a",
    "an error echoed to the caller",
    prevents="a health or API response carrying `str(e)`: hosts, users and database names "
    "leak to whoever calls it",
    fix="log the error and answer with a fixed body (Keel: readiness answers 503 with a "
    "generic reason)",
)
def errors_not_echoed(tree: Tree) -> Iterator[Finding]:
    for path, module in modules(tree):
        for function in functions(tree, module):
            if not is_route(function):
                continue
            for handler in tree.walk(function):
                if not (isinstance(handler, ast.ExceptHandler) and handler.name):
                    continue
                for node in ast.walk(handler):
                    if _echoes(node, handler.name):
                        yield finding(
                            tree,
                            path,
                            node,
                            "L2a",
                            f"{function.name} answers with the text of {handler.name}",
                        )


def _echoes(node: ast.AST, name: str) -> bool:
    if isinstance(node, ast.Return):
        answer = node.value
    elif isinstance(node, ast.Raise):
        answer = node.exc
    else:
        return False
    for part in ast.walk(answer) if answer is not None else ():
        if isinstance(part, ast.Call) and call_name(part) in ("str", "repr"):
            if any(isinstance(arg, ast.Name) and arg.id == name for arg in part.args):
                return True
        if isinstance(part, ast.FormattedValue) and isinstance(part.value, ast.Name):
            if part.value.id == name:
                return True
    return False


@rule(
    "L2b",
    "readiness that only opens a connection",
    prevents="a service reported ready before its migrations ran: `ensure_connection()` "
    "proves the server answers, not that the schema is at head",
    fix="readiness checks every domain database and that its migrations are at head",
)
def readiness_checks_migrations(tree: Tree) -> Iterator[Finding]:
    for path, module in modules(tree):
        for function in functions(tree, module):
            if not is_route(function):
                continue
            calls = [node for node in tree.walk(function) if isinstance(node, ast.Call)]
            names = {call_name(call) for call in calls}
            if "ensure_connection" in names and not any(map(_checks_schema, names)):
                call = next(call for call in calls if call_name(call) == "ensure_connection")
                yield finding(
                    tree, path, call, "L2b", f"{function.name} proves a connection, not the schema"
                )


def _checks_schema(name: str) -> bool:
    return "migrat" in name or name in ("behind", "heads", "current")


@rule(
    "L5",
    "worker inspection inside a request",
    prevents="a health request that waits seconds on `inspect()` replies from every worker, "
    "timing out probes under load",
    fix="keep worker status out of readiness; a detailed endpoint may ask with a short timeout",
)
def no_inspect_in_requests(tree: Tree) -> Iterator[Finding]:
    for path, module in modules(tree):
        for function in functions(tree, module):
            if not is_route(function):
                continue
            for node in tree.walk(function):
                if (
                    isinstance(node, ast.Call)
                    and call_name(node) == "inspect"
                    and not _has_timeout(node)
                ):
                    yield finding(
                        tree,
                        path,
                        node,
                        "L5",
                        f"{function.name} inspects the workers without a timeout",
                    )


def _has_timeout(call: ast.Call) -> bool:
    return any(keyword.arg == "timeout" for keyword in call.keywords)


@rule(
    "L6a",
    "`global_qos` in broker_transport_options",
    prevents='a "fix" for quorum queues\' NOT_IMPLEMENTED global QoS error that nothing '
    "reads: neither kombu nor Celery has such an option",
    fix="remove it; give quorum queues `x-queue-type: quorum` so Celery's "
    "`worker_detect_quorum_queues` turns global QoS off",
)
def no_global_qos_option(tree: Tree) -> Iterator[Finding]:
    for path, module in modules(tree):
        for node in tree.walk(module):
            if isinstance(node, ast.Dict):
                for key in node.keys:
                    if isinstance(key, ast.Constant) and key.value == "global_qos":
                        yield finding(
                            tree,
                            path,
                            key,
                            "L6a",
                            "global_qos is not an option kombu or Celery reads",
                        )


@rule(
    "L10",
    "`result.get()` inside a task",
    prevents='"Never call result.get() within a task!" (or a deadlock when the pool is '
    "full of tasks waiting on each other)",
    fix="chain the work, or call another worker's queue through one helper with a timeout "
    "and `disable_sync_subtasks=False`",
)
def no_wait_in_tasks(tree: Tree) -> Iterator[Finding]:
    for path, module in modules(tree):
        for function in functions(tree, module):
            if not is_task(function):
                continue
            pending = {
                target.id
                for node in tree.walk(function)
                if isinstance(node, ast.Assign)
                and isinstance(node.value, ast.Call)
                and call_name(node.value) in ASYNC_RESULT_CALLS
                for target in node.targets
                if isinstance(target, ast.Name)
            }
            for node in tree.walk(function):
                if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                    continue
                if node.func.attr != "get" or any(
                    k.arg == "disable_sync_subtasks" for k in node.keywords
                ):
                    continue
                owner = node.func.value
                waits = (isinstance(owner, ast.Name) and owner.id in pending) or (
                    isinstance(owner, ast.Call)
                    and call_name(owner) in ASYNC_RESULT_CALLS | {"AsyncResult"}
                )
                if waits:
                    yield finding(
                        tree,
                        path,
                        node,
                        "L10",
                        f"task {function.name} waits on another task's result",
                    )


@rule(
    "L11",
    "fanout exchange into one fixed queue",
    prevents="a broadcast that only one consumer receives: consumers of one named queue "
    "compete for each message instead of all getting it",
    fix="give each consumer its own server-named, exclusive, auto-delete queue bound to the "
    "fanout exchange",
)
def fanout_per_consumer(tree: Tree) -> Iterator[Finding]:
    for path, module in modules(tree):
        fanouts = {
            target.id
            for node in tree.walk(module)
            if isinstance(node, ast.Assign) and _is_fanout(node.value)
            for target in node.targets
            if isinstance(target, ast.Name)
        }
        for node in tree.walk(module):
            if not (isinstance(node, ast.Call) and call_name(node) == "Queue"):
                continue
            exchange = _keyword(node, "exchange")
            if len(node.args) > 1:
                exchange = node.args[1]
            bound_to_fanout = _is_fanout(exchange) or (
                isinstance(exchange, ast.Name) and exchange.id in fanouts
            )
            name = queue_name(node)
            named = name is not None
            exclusive = any(
                k.arg == "exclusive" and isinstance(k.value, ast.Constant) and k.value.value
                for k in node.keywords
            )
            if bound_to_fanout and named and not exclusive:
                yield finding(
                    tree,
                    path,
                    node,
                    "L11",
                    f"queue {name!r} is the one queue of a fanout exchange; its consumers compete",
                )


def _keyword(call: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def queue_name(call: ast.Call) -> str | None:
    """The literal name of a `Queue(...)`, given first or as `name=`."""
    name = call.args[0] if call.args else _keyword(call, "name")
    if isinstance(name, ast.Constant) and name.value:
        return str(name.value)
    return None


def _is_fanout(node) -> bool:
    return (
        isinstance(node, ast.Call)
        and call_name(node) == "Exchange"
        and any(
            isinstance(value, ast.Constant) and value.value == "fanout"
            for value in [*node.args[1:2], *(k.value for k in node.keywords if k.arg == "type")]
        )
    )


# Signals a worker sends once at start, where a match worker warms its in-process cache.
WORKER_START = {"worker_ready", "celeryd_after_setup", "celeryd_init", "worker_init"}
WARMS = re.compile(r"load|refresh|warm|replace|prime|fill", re.I)


@rule(
    "L12b",
    "a worker that follows cache events but never loads its cache",
    prevents="a match worker restarted on its own (crash, eviction, scale-up) answering from "
    "an empty cache until the next deploy's warm-up Job",
    fix="on worker start, subscribe to the cache events first, then load the cache from the "
    "database",
)
def workers_warm_their_cache(tree: Tree) -> Iterator[Finding]:
    warmers = {
        function.name
        for _, module in modules(tree)
        for function in functions(tree, module)
        if any(WARMS.search(call_name(call)) for call in _calls(tree, function))
    }
    for path, module in modules(tree):
        for function in functions(tree, module):
            if not _on_worker_start(function):
                continue
            calls = list(_calls(tree, function))
            names = [call_name(call) for call in calls]
            follows = [
                call for call, name in zip(calls, names, strict=True) if "consum" in name.lower()
            ]
            follows += [
                call for call, name in zip(calls, names, strict=True) if name.startswith("start")
            ]
            warms = any(WARMS.search(name) or name in warmers for name in names)
            if follows and not warms:
                yield finding(
                    tree,
                    path,
                    follows[0],
                    "L12b",
                    f"{function.name} follows the cache events but never loads the cache",
                )


def _calls(tree, function) -> Iterator[ast.Call]:
    return (node for node in tree.walk(function) if isinstance(node, ast.Call))


def _on_worker_start(function) -> bool:
    for decorator in function.decorator_list:
        target = decorator.func if isinstance(decorator, ast.Call) else decorator
        if not (isinstance(target, ast.Attribute) and target.attr == "connect"):
            continue
        signal = target.value
        name = signal.attr if isinstance(signal, ast.Attribute) else getattr(signal, "id", "")
        if name in WORKER_START:
            return True
    return False


@rule(
    "L14",
    "a generic DATABASE_URL",
    prevents="a worker silently using another domain's database through a shared fallback",
    fix="one required `<DOMAIN>_DATABASE_URL` per domain, no fallback; a missing one stops "
    "start-up naming it",
)
def no_generic_database_url(tree: Tree) -> Iterator[Finding]:
    for path, module in modules(tree):
        for node in tree.walk(module):
            if _reads_generic_url(node):
                yield finding(
                    tree,
                    path,
                    node,
                    "L14",
                    "reads the generic DATABASE_URL; use <DOMAIN>_DATABASE_URL",
                )


def _reads_generic_url(node: ast.AST) -> bool:
    """`os.environ["DATABASE_URL"]`, `.get("DATABASE_URL", ...)`, `getenv("DATABASE_URL")`,
    `env("DATABASE_URL")`: a read, not a mention (tests that set it to prove it is ignored)."""
    if isinstance(node, ast.Subscript):
        key = node.slice
        return (
            isinstance(key, ast.Constant)
            and key.value == GENERIC
            and isinstance(node.ctx, ast.Load)
        )
    if isinstance(node, ast.Call) and call_name(node) in ("get", "getenv", "env", "str", "db_url"):
        first = node.args[0] if node.args else None
        return isinstance(first, ast.Constant) and first.value == GENERIC
    return False


@rule(
    "L8",
    "a task module importing a web module",
    prevents="a worker importing another domain's service module, pulling in a web "
    "framework its image lacks (ModuleNotFoundError: fastapi)",
    fix="call other domains by task name (`send_task`) behind a small client; enforce the "
    "boundary with import-linter",
)
def tasks_stay_off_the_web(tree: Tree) -> Iterator[Finding]:
    web = {path for path, module in modules(tree) if _imports_web(tree, module)}
    for path, module in modules(tree):
        if path in web or not any(is_task(function) for function in functions(tree, module)):
            continue
        for node in module.body:
            for target in _local_imports(tree, path, node):
                if target in web:
                    yield finding(
                        tree,
                        path,
                        node,
                        "L8",
                        f"a task module imports {tree.relative(target)}, which "
                        "imports a web framework",
                    )


@rule(
    "L9",
    "re-exports in a package `__init__`",
    prevents="importing any module of the package initialising all of it, web framework included",
    fix="keep `__init__.py` free of imports; import what you need from its module",
)
def no_reexports(tree: Tree) -> Iterator[Finding]:
    web = {path for path, module in modules(tree) if _imports_web(tree, module)}
    for path, module in modules(tree):
        if path.name != "__init__.py":
            continue
        for node in module.body:
            targets = _local_imports(tree, path, node)
            if _imports_web(tree, node) or any(target in web for target in targets):
                yield finding(
                    tree,
                    path,
                    node,
                    "L9",
                    "the package __init__ re-exports a module that imports a web framework",
                )


def _imports_web(tree: Tree, module: ast.AST) -> bool:
    for node in tree.walk(module):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level:
            names = [node.module or ""]
        else:
            continue
        if any(
            name == web or name.startswith(f"{web}.") for name in names for web in WEB_FRAMEWORKS
        ):
            return True
    return False


def _local_imports(tree: Tree, path: Path, node: ast.AST) -> list[Path]:
    """The files of this tree that an import statement names (relative or absolute)."""
    if isinstance(node, ast.ImportFrom):
        if node.level:
            base = path.parent
            for _ in range(node.level - 1):
                base = base.parent
        else:
            base = None
        dotted = [node.module or ""] + [
            f"{node.module}.{alias.name}" if node.module else alias.name for alias in node.names
        ]
    elif isinstance(node, ast.Import):
        base, dotted = None, [alias.name for alias in node.names]
    else:
        return []
    found = []
    for name in dotted:
        parts = [part for part in name.split(".") if part]
        roots = [base] if base is not None else _source_roots(tree)
        for root in roots:
            candidate = root.joinpath(*parts)
            for file in (candidate.with_suffix(".py"), candidate / "__init__.py"):
                if parts and file.is_file():
                    found.append(file.resolve())
    return found


def _source_roots(tree: Tree) -> list[Path]:
    return [tree.root, tree.root / "src"]
