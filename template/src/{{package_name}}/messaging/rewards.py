"""The reward event: one model for the HTTP body, the producers and the reward workers.

It admits exactly what a domain's ``rewards`` table accepts, so a malformed event is
refused before it reaches a database: with a 422 by the API, with a ValidationError by
``DomainClient.reward``, and by the reward worker, which dead-letters it on its own.
It lives in ``messaging`` so that workers and the web layer can both import it.
"""

from pydantic import BaseModel, ConfigDict, Field

#: PostgreSQL's ``integer`` range.
INTEGER_MIN = -(2**31)
INTEGER_MAX = 2**31 - 1


class RewardPayload(BaseModel):
    # Strict: "5" or true for points is a producer's bug to surface, not to guess around.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    #: ``rewards.subject`` is a VARCHAR(200); PostgreSQL text cannot hold NUL characters.
    subject: str = Field(min_length=1, max_length=200, pattern=r"^[^\x00]*$")
    points: int = Field(ge=INTEGER_MIN, le=INTEGER_MAX)
