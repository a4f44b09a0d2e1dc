"""Bots spread over worker hosts: Celery on Redis carries the work, the shared store stays the one truth.

```
  meeting-bot serve (API + APScheduler, launcher = "celery")
      │ a bot's time comes: scheduled → queued in the store, then one token on the queue
      ▼
  Redis  ── queue "meeting-bot": anonymous tokens, one per queued bot ──┐
      ▲                                                                 │ a worker with a free slot
      │ (re-filled from the store when Redis lost them)                 ▼ takes one token
  PostgreSQL (shared) ◄── claim the earliest queued bot, heartbeats, events, stop requests ── workers
                                                                  meeting-bot worker --capacity N
                                                                  (each bot: the child `join --json`)
```

- `placement`: the hosts table and every conditional update that decides who runs what (claim, heartbeat,
  hand back, lost host) — SQLAlchemy only, no Celery, so the API can list hosts without a broker.
- `queue`: the Celery app both sides share, and the token queue (publish, length).
- `celery_launcher`: the service side (`CeleryLauncher`): hands queued bots to the queue, re-fills it from
  the store, and re-launches the bots of a host that stopped heartbeating.
- `worker`: `meeting-bot worker`: a Celery worker that runs at most `capacity` bots as child processes and
  records them in the store.

A token names no bot: the worker that takes one claims the *earliest queued* bot by join time (a conditional
`queued → starting` update), so the queue order is the join time whatever order the broker delivers in, a
duplicate or stale token is harmless (it finds nothing queued), and a lost token is replaced by counting
(`queued bots > tokens waiting` → publish the difference).
"""
