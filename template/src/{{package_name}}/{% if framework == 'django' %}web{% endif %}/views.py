"""HTTP entry points into each domain, sent to the workers by task name, and the detailed
health view (broker and workers; never part of readiness)."""

import json

from celery.exceptions import TimeoutError as TaskTimeout
from django.http import Http404, HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST
from pydantic import ValidationError

from ..messaging.calls import DomainClient
from ..messaging.presence import broker_details
from ..messaging.rewards import RewardPayload
from ..settings import DOMAINS


def _client(domain: str) -> DomainClient:
    if domain not in DOMAINS:
        raise Http404("unknown domain")
    return DomainClient(domain)


@require_GET
def match(request: HttpRequest, domain: str, key: str) -> JsonResponse:
    client = _client(domain)
    try:
        return JsonResponse({"key": key, "value": client.match(key)})
    except TaskTimeout:
        return JsonResponse({"detail": "match timed out"}, status=504)


@csrf_exempt  # a service-to-service JSON API: no browser session, no cookie to forge
@require_POST
def reward(request: HttpRequest, domain: str) -> JsonResponse:
    client = _client(domain)
    try:
        body = RewardPayload.model_validate_json(request.body)
    except ValidationError as error:
        details = json.loads(error.json(include_url=False, include_input=False))
        return JsonResponse({"detail": details}, status=422)
    return JsonResponse({"event_id": client.reward(body.subject, body.points)}, status=202)


@require_GET
def details(request: HttpRequest) -> JsonResponse:
    return JsonResponse(broker_details(timeout=1.0))
