"""The only way code here calls another domain: by task name, over the broker.

``call`` is the one place allowed to wait for a result. It always has a timeout, and it
lifts Celery's "never call result.get() within a task" guard only when the target queue is
served by a different worker than the one running the caller, so a worker can never wait
on itself.
"""

from typing import Any

from .app import app
from .rewards import RewardPayload
from .topology import load


def send(task_name: str, **kwargs: Any) -> str:
    """Fire and forget; returns the task id."""
    load().queue_for_task(task_name)
    return app.send_task(task_name, kwargs=kwargs).id


def call(task_name: str, *, timeout: float = 5.0, **kwargs: Any) -> Any:
    """Send and wait up to ``timeout`` seconds for the result."""
    target = load().queue_for_task(task_name)
    running_in = app.conf.get("topology_worker")
    other_worker = running_in is not None and target.worker != running_in
    result = app.send_task(task_name, kwargs=kwargs)
    return result.get(timeout=timeout, disable_sync_subtasks=not other_worker)


class DomainClient:
    """A domain's tasks as seen by callers, which never import that domain's code."""

    def __init__(self, domain: str):
        if domain not in load().domains:
            raise KeyError(f"no domain {domain!r} in topology.yaml")
        self.domain = domain

    def match(self, key: str, *, timeout: float = 5.0) -> str | None:
        return call(f"{self.domain}.match", timeout=timeout, key=key)

    def reward(self, subject: str, points: int) -> str:
        """Raises pydantic's ValidationError, before sending, for a reward the domain
        could never save."""
        reward = RewardPayload(subject=subject, points=points)
        return send(f"{self.domain}.reward", **reward.model_dump())
