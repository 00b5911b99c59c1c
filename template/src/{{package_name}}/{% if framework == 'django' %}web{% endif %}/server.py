"""``serve-api``: check the configuration, then replace this process with gunicorn."""

import os
import shutil
import sys

from .. import orm
from ..faults import ConfigurationFault, entry_point
from ..serving import listen_address

WORKERS = 2


@entry_point("serve-api")
def main(argv: list[str] | None = None) -> int:
    host, port = listen_address(argv)
    orm.setup()  # Django's own settings (SECRET_KEY, ALLOWED_HOSTS) checked here, too
    gunicorn = shutil.which("gunicorn")
    if gunicorn is None:
        raise ConfigurationFault("gunicorn is not installed: install the web extra, `.[web]`")
    command = [
        gunicorn,
        f"{__package__}.wsgi:application",
        f"--bind={host}:{port}",
        f"--workers={WORKERS}",
        "--access-logfile=-",
        # gunicorn 27 opens a control socket under $HOME by default; containers have no home.
        "--no-control-socket",
    ]
    sys.stdout.flush()
    os.execv(gunicorn, command)  # gunicorn becomes this process: it gets SIGTERM itself


if __name__ == "__main__":
    sys.exit(main())
