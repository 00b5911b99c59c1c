"""Liveness and readiness, answered before any other middleware.

The kubelet's probe names the pod's IP as its host and speaks plain HTTP: answered later,
ALLOWED_HOSTS would turn it into a 400 and the HTTPS redirect into a 301. Liveness does no
I/O: a restart cannot fix a database that is down. Readiness checks every domain database
and its migrations; details go to the log, never to the caller.
"""

from django.http import HttpRequest, HttpResponse, JsonResponse

from .. import readiness

PATHS = ("/health/live", "/health/ready")


class HealthProbes:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.method != "GET" or request.path not in PATHS:
            return self.get_response(request)
        if request.path == "/health/live":
            return JsonResponse({"status": "alive"})
        if readiness.problems():
            response = JsonResponse({"status": "unavailable"}, status=503)
            # readiness has logged why; Django would log every failed probe as an error too.
            response._has_been_logged = True
            return response
        return JsonResponse({"status": "ready"})
