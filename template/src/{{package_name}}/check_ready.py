"""``check-ready``: the API container's healthcheck; asks the readiness endpoint, needs no curl."""

import sys
import urllib.error
import urllib.request

from .faults import Fault, entry_point
from .settings import get_settings


@entry_point("check-ready")
def main() -> int:
    url = f"http://127.0.0.1:{get_settings().port}/health/ready"
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return 0 if response.status == 200 else 1
    except urllib.error.HTTPError as error:
        # The API logs why it is not ready; the response deliberately does not say.
        raise Fault(
            f"{url} answered {error.code} {error.reason}; the API's log says why "
            "(a database down or not migrated: run `migrate`)"
        ) from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise Fault(f"{url} is not answering ({reason}); is `serve-api` running on PORT?") from None


if __name__ == "__main__":
    sys.exit(main())
