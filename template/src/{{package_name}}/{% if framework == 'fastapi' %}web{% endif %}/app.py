"""The FastAPI application: the only module that knows the web framework's app object."""

from fastapi import FastAPI

from ..settings import get_settings
from . import domains, health


def create_app() -> FastAPI:
    get_settings()  # fail at start-up, naming any missing variable, not on the first request
    app = FastAPI(title=__package__.split(".")[0])
    app.include_router(health.router)
    app.include_router(domains.router)
    return app
