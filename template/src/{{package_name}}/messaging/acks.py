"""One acknowledgement frame for a saved batch, wherever that is safe.

Acknowledging every message of a batch on its own costs the worker's consumer thread, the
one that reads every delivery, a frame per message: a fifth of its time at full speed
(benchmarks/reward_throughput.py). AMQP's ``basic.ack`` with ``multiple`` settles every
unacknowledged delivery of the channel up to a tag in one frame, so it may only cover tags
that are settled already or being acknowledged now. A channel's ledger knows which those
are only while every delivery on the channel came to this task (tags 1, 2, 3, ... without
a gap) and only below the oldest delivery still in flight; everything else is
acknowledged one by one, as before.

Every method runs on the consumer thread (the worker's event loop), where kombu writes
frames: a reject or dead letter queued there before a batch's acknowledgement has been
sent by the time the ledger counts it settled.
"""

import logging
from collections.abc import Iterable
from weakref import WeakKeyDictionary

from kombu import Message

log = logging.getLogger(__name__)

#: Deliveries settled above a floor that never rises (a tag this task never settles, e.g.
#: one celery-batches rejected itself); past this many the ledger gives up on the channel.
MAX_SETTLED_ABOVE_FLOOR = 10_000


class ChannelLedger:
    """Which delivery tags of one channel are settled: all up to ``floor``, and a few
    above it."""

    def __init__(self) -> None:
        self.gapless = True
        self.last_received = 0
        self.floor = 0
        self.settled_above_floor: set[int] = set()

    def received(self, tag: int) -> None:
        if tag != self.last_received + 1:  # another consumer's delivery in between
            self.gapless = False
        self.last_received = tag

    def settle(
        self, acknowledge: Iterable[int], settled: Iterable[int]
    ) -> tuple[int | None, list[int]]:
        """Plan the acknowledgement of ``acknowledge`` once ``settled`` went out one by one.

        Returns the tag to acknowledge with ``multiple`` (None for none) and the tags left
        to acknowledge one by one, which the caller must send before anything else.
        """
        pending = set(acknowledge)
        if not self.gapless:
            return None, sorted(pending)
        self.settled_above_floor.update(settled)
        through = None
        while True:
            tag = self.floor + 1
            if tag in pending:
                pending.remove(tag)
                through = tag
            elif tag in self.settled_above_floor:
                self.settled_above_floor.remove(tag)
            else:
                break
            self.floor = tag
        self.settled_above_floor.update(pending)
        if len(self.settled_above_floor) > MAX_SETTLED_ABOVE_FLOOR:
            self.gapless = False
            self.settled_above_floor.clear()
        return through, sorted(pending)


class Ledgers:
    """A ledger per channel: a reconnected worker starts a new channel at tag 1."""

    def __init__(self) -> None:
        self._by_channel: WeakKeyDictionary = WeakKeyDictionary()

    def received(self, message: Message) -> None:
        self._for(message.channel).received(message.delivery_tag)

    def acknowledge(self, saved: list[Message], settled: list[Message], errors: tuple) -> None:
        """Acknowledge ``saved`` after ``settled`` (rejected or dead-lettered) went out."""
        by_channel: dict = {}
        for message in saved:
            by_channel.setdefault(message.channel, ([], []))[0].append(message)
        for message in settled:
            by_channel.setdefault(message.channel, ([], []))[1].append(message)
        for channel, (to_acknowledge, to_count) in by_channel.items():
            by_tag = {message.delivery_tag: message for message in to_acknowledge}
            through, one_by_one = self._for(channel).settle(
                by_tag, (message.delivery_tag for message in to_count)
            )
            for tag in one_by_one:
                by_tag[tag].ack_log_error(log, errors)
            if through is not None:
                by_tag[through].ack_log_error(log, errors, multiple=True)
                for tag, message in by_tag.items():
                    if tag < through:
                        message._state = "ACK"  # settled by the frame above

    def _for(self, channel) -> ChannelLedger:
        try:
            return self._by_channel[channel]
        except KeyError:
            ledger = self._by_channel[channel] = ChannelLedger()
            return ledger
