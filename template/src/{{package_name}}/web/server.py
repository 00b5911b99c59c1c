"""``serve-api``: run the API with uvicorn, failing fast on bad configuration."""

import argparse
import os
import sys

import uvicorn

from ..settings import SettingsError, get_settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="serve-api", description="Serve the HTTP API.")
    parser.add_argument("--host", default=os.environ.get("HOST", "0.0.0.0"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    args = parser.parse_args(argv)
    try:
        get_settings()
    except SettingsError as error:
        print(f"serve-api: {error}", file=sys.stderr)
        return 2
    uvicorn.run(f"{__package__}.app:create_app", factory=True, host=args.host, port=args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
