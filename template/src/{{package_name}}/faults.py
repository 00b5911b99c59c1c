"""One line for every operational fault, the same way in every command.

Each command's ``main`` is wrapped in :func:`entry_point`. Code that reaches a domain
database or the broker does so inside ``db.database_faults`` or
``messaging.broker.broker_faults``, which turn the library's exception into a
:class:`Fault` that names what failed, the variable that points at it and what to do.
:func:`entry_point` prints that one line and returns the exit code: 1 for a fault, 2 for
configuration (settings, topology.yaml), as argparse does for bad arguments. Anything else
is a bug and keeps its traceback.

This module imports no database or broker library: ``check-ready`` uses it and runs every
few seconds as a healthcheck.
"""

import functools
import re
import sys
from collections.abc import Callable

from .messaging.topology import TopologyError
from .settings import SettingsError

OPERATIONAL = 1
CONFIGURATION = 2
_URL_PASSWORD = re.compile(r"(\w+://[^:/@\s]*:)[^@\s]*@")


class Fault(Exception):
    """A service that is down or refuses us, or a check that found a problem (exit 1)."""

    exit_code = OPERATIONAL


class ConfigurationFault(Fault):
    """The command was pointed at something that cannot work as configured (exit 2)."""

    exit_code = CONFIGURATION


def masked(text: str) -> str:
    """``text`` with the password of every URL in it replaced by ``***``: fit for messages,
    logs and dead-letter headers."""
    return _URL_PASSWORD.sub(r"\1***@", text)


def entry_point(name: str) -> Callable[[Callable[..., int]], Callable[..., int]]:
    """Wrap a command's ``main``: faults become one line on stderr and an exit code."""

    def decorate(main: Callable[..., int]) -> Callable[..., int]:
        @functools.wraps(main)
        def guarded(*args, **kwargs) -> int:
            try:
                return main(*args, **kwargs)
            except (SettingsError, TopologyError) as error:
                return report(name, error, CONFIGURATION)
            except Fault as error:
                return report(name, error, error.exit_code)

        return guarded

    return decorate


def report(name: str, problem: object, exit_code: int) -> int:
    # One line whatever the message holds: a YAML error, for one, spans several.
    print(f"{name}: {' '.join(str(problem).split())}", file=sys.stderr)
    return exit_code
