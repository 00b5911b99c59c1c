"""The Celery application: the worker runs it, producers import it to send tasks.

Replies travel over RabbitMQ itself (the ``rpc://`` result backend), so there is no extra
result store to run. Each domain's tasks live in ``<domain>/tasks.py``.
"""

from celery import Celery

from ..settings import DOMAINS, get_settings

PACKAGE = __package__.rsplit(".", 1)[0]


def create_app() -> Celery:
    app = Celery(PACKAGE)
    app.conf.update(
        broker_url=get_settings().broker_url,
        result_backend="rpc://",
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        # Acknowledge after the task ran, so a worker that dies mid-task loses nothing.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        broker_connection_retry_on_startup=True,
        imports=[f"{PACKAGE}.{domain}.tasks" for domain in DOMAINS],
    )
    return app


app = create_app()
