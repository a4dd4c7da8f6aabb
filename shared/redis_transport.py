"""kombu's Redis transport, made to survive a broker restart while a task runs.

When Redis goes away under a running task, kombu first restores the task while closing the broken
channel and later acknowledges it on that channel; both need the connection it has already let go
of, and the AttributeError kills the worker (seen here with Redis restarted mid-reply; see
celery/celery#9250). Here both are skipped: the task stays in Redis's `unacked` hash and comes back
after the visibility timeout, and our own leases resend interactive work long before that
(shared/recovery.py). A second copy is harmless: claims are atomic.
"""

from __future__ import annotations

import logging

import kombu.transport
from kombu.transport import redis as kombu_redis

log = logging.getLogger(__name__)


class QoS(kombu_redis.QoS):
    restore_at_shutdown = False

    def ack(self, delivery_tag: str) -> None:
        try:
            super().ack(delivery_tag)
        except AttributeError:  # the channel lost its connection while the task ran
            log.warning("task %s finished after the broker connection was lost; left to the broker", delivery_tag)


class Channel(kombu_redis.Channel):
    QoS = QoS


class Transport(kombu_redis.Transport):
    Channel = Channel


def install() -> None:
    """Use this transport for redis:// and rediss:// broker URLs in this process."""
    for scheme in ("redis", "rediss"):
        kombu.transport.TRANSPORT_ALIASES[scheme] = f"{__name__}:Transport"
