"""This domain's Celery tasks; the worker imports this module (see messaging/app.py)."""

from ..messaging.app import app

DOMAIN = __package__.rsplit(".", 1)[-1]


@app.task(name=f"{DOMAIN}.ping")
def ping() -> str:
    """A trivial task that proves a worker consumes this domain's tasks."""
    return "pong"
