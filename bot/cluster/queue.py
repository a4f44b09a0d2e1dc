"""The Celery app the service and the workers share, and the queue of bot tokens on it.

A message on the queue is a *token*: "one bot is queued". It carries no bot id on purpose (see
`bot.cluster`): the worker that takes it claims the earliest queued bot from the store. The settings that
make Celery fit bots that run for hours:

- `task_acks_late` with `worker_disable_prefetch`: a worker holds (unacknowledged) exactly the tokens of
  the bots it runs and takes a new one only when it has a free slot, so a bot never waits in one worker's
  buffer while another host is idle;
- a visibility timeout longer than any bot's life: Redis would otherwise hand a running bot's token to
  another worker after an hour (harmless, it would find nothing to claim, but pointless);
- tokens go to the queue's list directly (the anonymous exchange), so a Redis that lost its exchange
  bindings (restart, FLUSHALL) still receives every token;
- the workers keep running their bots when the broker goes away and reconnect forever.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery

log = logging.getLogger(__name__)

QUEUE = "meeting-bot"
TASK = "meeting_bot.take_bot"
# Longer than the longest bot (the API's max_duration_s is at most a day) plus the time it queued.
VISIBILITY_TIMEOUT_S = 2 * 24 * 3600


class QueueUnavailable(RuntimeError):
    """The broker could not be reached."""


def make_app(broker_url: str, concurrency: int | None = None) -> Celery:
    """The Celery app on `broker_url` (Redis). `concurrency`: the worker's capacity (its threads)."""
    if not broker_url.startswith(("redis://", "rediss://", "redis+socket://")):
        raise ValueError("scheduler.broker_url must be a Redis URL such as redis://redis:6379/0")
    app = Celery("meeting-bot", broker=broker_url, set_as_current=False)
    conf: dict[str, Any] = {
        "task_default_queue": QUEUE,
        "task_acks_late": True,
        "task_ignore_result": True,
        "task_serializer": "json",
        "accept_content": ["json"],
        "worker_prefetch_multiplier": 1,
        "worker_disable_prefetch": True,
        "worker_cancel_long_running_tasks_on_connection_loss": False,
        "worker_hijack_root_logger": False,
        "worker_redirect_stdouts": False,
        "worker_send_task_events": False,
        "worker_pool": "threads",
        "broker_connection_retry_on_startup": True,
        "broker_connection_max_retries": None,
        "broker_connection_timeout": 3,
        "broker_transport_options": {
            "visibility_timeout": VISIBILITY_TIMEOUT_S,
            "socket_connect_timeout": 3,
            "socket_timeout": 10,
            "health_check_interval": 10,
        },
        "enable_utc": True,
    }
    if concurrency is not None:
        conf["worker_concurrency"] = concurrency
    app.conf.update(conf)
    return app


class TokenQueue:
    """Publishes tokens and counts the ones waiting. Blocking calls: the service runs them in a thread."""

    def __init__(self, app: Celery) -> None:
        self.app = app

    def publish(self, count: int = 1) -> None:
        """Puts `count` tokens on the queue; QueueUnavailable when the broker is down."""
        try:
            for _ in range(count):
                self.app.send_task(TASK, exchange="", routing_key=QUEUE, retry=False)
        except Exception as e:  # kombu and redis-py raise several kinds for "cannot reach the broker"
            raise QueueUnavailable(f"cannot publish to the broker: {e}") from e

    def waiting(self) -> int:
        """Tokens on the queue that no worker has taken yet."""
        try:
            with self.app.connection_for_write() as conn:
                ok = conn.default_channel.queue_declare(queue=QUEUE, durable=True, auto_delete=False)
                return int(ok.message_count)
        except Exception as e:
            raise QueueUnavailable(f"cannot reach the broker: {e}") from e
