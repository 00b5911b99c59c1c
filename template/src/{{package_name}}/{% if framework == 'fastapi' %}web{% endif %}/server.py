"""``serve-api``: run the API with uvicorn, failing fast on bad configuration."""

import sys

import uvicorn

from ..faults import entry_point
from ..serving import listen_address


@entry_point("serve-api")
def main(argv: list[str] | None = None) -> int:
    host, port = listen_address(argv)
    uvicorn.run(f"{__package__}.app:create_app", factory=True, host=host, port=port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
