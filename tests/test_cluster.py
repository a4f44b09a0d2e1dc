"""Bots on many hosts: `serve` with scheduler.launcher = celery, real Redis and PostgreSQL, and three worker
hosts (`meeting-bot worker --capacity 2`), each in its own network namespace reaching the servers over a
virtual network (tests/cluster_support.py). Most bots are tests/fake_join.py (the `join --json` contract,
in the call at once); some are the real bot (`python -m bot join`) in a replica meeting whose replica and
agent stand-in listen on the virtual network, with a simulated person speaking a tone and the agent answering
its own: audio is checked both ways, also after the bot's host dies and it rejoins from another.

One cluster serves the whole module (its setup takes a few seconds); each test ends its bots, and a test
that kills or stops a host starts it again before it returns.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cluster_support import TERMINAL, Cluster, RealCall, WorkerProcess, start_calls, wait_until
from tests.netns import leftover_names, unavailable

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(240)]

HOST_TIMEOUT_S = 5.0
LEAD_S = 8.0
REAL_JOIN_S = 60  # a real bot's join on a loaded 2-core machine (about 4 s when idle)
DEPLOY = Path(__file__).resolve().parent.parent / "deploy" / "kubernetes"


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    if why := unavailable():
        pytest.skip(why)
    c = Cluster(
        hosts=3,
        capacity=2,
        host_timeout_s=HOST_TIMEOUT_S,
        meetings=True,  # real bots may join replica meetings too
        BOT_SCHEDULER_LEAD_TIME_S=f"{LEAD_S:g}",
    )
    try:
        c.start()
        yield c
    finally:
        c.close()
    left = {name for name in leftover_names() if name.startswith(c.net.tag)}
    assert not left, f"namespaces or links left: {left}"


@pytest.fixture(autouse=True)
def ends_its_bots(request: pytest.FixtureRequest) -> Iterator[None]:
    """After each cluster test, even a failed one: no bot of it still runs and every host is up again, so
    one failure does not turn into the next tests' failures."""
    yield
    if "cluster" not in request.fixturenames:
        return
    cluster: Cluster = request.getfixturevalue("cluster")
    assert cluster.api is not None
    r = cluster.api.get("/bots", params={"limit": 1000})
    assert r.status_code == 200, r.text
    running = [b["id"] for b in r.json() if b["state"] not in TERMINAL]
    if running:
        cluster.end_all(running, timeout=60)
    for w in cluster.workers:
        if w.proc is None or w.proc.poll() is not None:
            restart(w)
    for w in cluster.workers:  # a real bot's browser, display and audio daemon may take a moment to go
        wait_until(functools.partial(only_the_worker, w), 30, f"the bots' processes on {w.name} to end")


def only_the_worker(worker: WorkerProcess) -> bool:
    return worker.proc is not None and set(worker.host.pids()) <= {worker.proc.pid}


class HostWatch:
    """Samples GET /hosts in the background: the most bots each host ran at once."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.most: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            for name, host in self.cluster.hosts().items():
                self.most[name] = max(self.most.get(name, 0), len(host["bots"]))

    def __enter__(self) -> HostWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


def events(bot: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [e for e in bot["events"] if e.get("event") == kind]


def at(value: str) -> float:
    return dt.datetime.fromisoformat(value).timestamp()


def end_calls(cluster: Cluster, calls: list[RealCall], bots: list[str]) -> None:
    """Ends the test's bots (a failed test leaves none running), then takes the people out of their rooms."""
    try:
        with contextlib.suppress(AssertionError):
            cluster.end_all({*(c.bot_id for c in calls if c.bot_id), *bots})
    finally:
        for call in calls:
            call.close()


def restart(worker: WorkerProcess) -> None:
    """Starts a stopped or killed host again (the next tests want three)."""
    worker.stop(signal.SIGKILL)
    worker.drain = "finish"
    worker.start()


def test_six_bots_spread_two_per_host_and_the_queue_follows_join_time(cluster: Cluster) -> None:
    """Two of the six are real bots, each in its own replica meeting with a person: both hear and are heard
    across the virtual network. The queue part uses the quick fake bots."""
    real = [
        RealCall(cluster, "aaa-bbbb-ccc", 440.0, 660.0, bot_name="Agent A"),
        RealCall(cluster, "ddd-eeee-fff", 550.0, 880.0, bot_name="Agent B"),
    ]
    six: list[str] = []
    late = early = ""
    try:
        with HostWatch(cluster) as watch:
            start_calls(real)
            fake = [cluster.schedule() for _ in range(4)]
            six += [*(c.bot_id for c in real), *fake]
            for b in six:
                cluster.wait_state(b, {"in_call"}, timeout=REAL_JOIN_S)
            placed = [cluster.bot(b)["host"] for b in six]
            assert sorted(placed) == ["w1", "w1", "w2", "w2", "w3", "w3"], placed
            hosts = cluster.hosts()
            assert {n: h["running"] for n, h in hosts.items()} == {"w1": 2, "w2": 2, "w3": 2}
            assert {h["address"] for h in hosts.values()} == {h.address for h in cluster.net.hosts}
            for call in real:  # the person's tone reaches the agent, the agent's tone the person
                call.hears_both_ways()
            # Every host is full: these wait in the queue. The later-scheduled one joins earlier: first.
            late = cluster.schedule(join_in_s=LEAD_S - 2)
            early = cluster.schedule(join_in_s=LEAD_S - 4)
            time.sleep(1.5)
            assert [cluster.bot(b)["state"] for b in (late, early)] == ["queued", "queued"]
            assert cluster.bot(late)["host"] is None
            freed = cluster.bot(fake[0])["host"]
            cluster.end_all([fake[0]])
            started = cluster.wait_state(early, {"in_call"}, timeout=10)
            assert started["host"] == freed
            assert cluster.bot(late)["state"] == "queued"
            cluster.end_all([fake[1]])
            cluster.wait_state(late, {"in_call"}, timeout=10)
            cluster.end_all([*six, late, early])
    finally:
        end_calls(cluster, real, [b for b in (*six, late, early) if b])
    assert watch.most and max(watch.most.values()) == 2, watch.most
    runs = [run for w in cluster.workers for run in cluster.runs(w)]
    assert sorted(runs) == sorted([*six, late, early])  # each ran once
    for call in real:
        bot = cluster.bot(call.bot_id)
        assert (bot["state"], bot["end_reason"], bot["exit_code"]) == ("ended", "left", 0), bot
        assert bot["summary"]["bytes_to_agent"] > 0 and bot["summary"]["bytes_from_agent"] > 0
        assert call.most_bots_in_room == 1


def test_cancel_reaches_a_bot_on_another_host_within_2_s(cluster: Cluster) -> None:
    bot = cluster.schedule()
    cluster.wait_state(bot, {"in_call"})
    asked = time.time()
    assert cluster.cancel(bot) == 202
    done = cluster.wait_state(bot, TERMINAL, timeout=10)
    took = at(done["ended_at"]) - asked
    assert (done["state"], done["end_reason"], done["exit_code"]) == ("ended", "left", 0)
    assert done["host"] in {"w1", "w2", "w3"}
    assert took < 2.0, f"the bot left {took:.2f} s after the cancel"


def test_power_cut_of_a_host_relaunches_its_bots_on_the_others(cluster: Cluster) -> None:
    """One real bot in a replica meeting and three fake ones; every process of the real bot's host is
    SIGKILLed. Its bots are recorded host_lost and relaunched elsewhere; the real one rejoins the same
    meeting and the person hears its agent again within 30 s of the kill, never two of it in the room."""
    call = RealCall(cluster, "ggg-hhhh-iii", 440.0, 660.0, bot_name="Agent C")
    victim: WorkerProcess | None = None
    bots: list[str] = []
    try:
        call.start()
        bots += [call.bot_id, *(cluster.schedule() for _ in range(3))]
        for b in bots:
            cluster.wait_state(b, {"in_call"}, timeout=REAL_JOIN_S)
        call.hears_both_ways()
        victim_name = cluster.bot(call.bot_id)["host"]
        victims = [b for b in bots if cluster.bot(b)["host"] == victim_name]
        victim = next(w for w in cluster.workers if w.name == victim_name)
        calls_before = len(call.calls())
        cut = time.time()
        killed = victim.power_cut()
        assert killed and not victim.host.pids()

        def back(b: str) -> dict[str, Any] | None:
            bot = cluster.bot(b)
            return bot if bot["state"] == "in_call" and bot["host"] != victim_name else None

        heard_again = call.agent_heard_again(cut, timeout=40) - cut
        for b in victims:
            bot = wait_until(functools.partial(back, b), HOST_TIMEOUT_S + 20, f"bot {b} back in its call")
            lost = events(bot, "host_lost")
            assert len(lost) == 1 and lost[0]["host"] == victim_name and lost[0]["action"] == "relaunch"
            launches = events(bot, "launched")
            assert launches[0]["host"] == victim_name and launches[1]["host"] != victim_name
            assert at(launches[1]["at"]) > cut  # never two at once: the new one started after the cut
            assert bot["attempts"] == 2
            rejoined = max(at(e["at"]) for e in events(bot, "in_call")) - cut
            limit = 30 if b == call.bot_id else HOST_TIMEOUT_S + 15
            assert rejoined < limit, f"bot {b} back in the call {rejoined:.1f} s after the cut"
        # The real bot: a new agent session, which hears the person again; the person heard it within 30 s.
        call.hears_both_ways()
        assert len(call.calls()) > calls_before
        assert heard_again < 30, f"the person heard the agent again {heard_again:.1f} s after the cut"
        assert call.most_bots_in_room == 1  # the room never held the bot twice
        print(f"real bot: the person hears its agent again {heard_again:.1f} s after its host's power cut")
        assert cluster.hosts()[victim_name]["state"] == "lost"
        for b in set(bots) - set(victims):
            assert events(cluster.bot(b), "host_lost") == []
        cluster.end_all(bots)
    finally:
        end_calls(cluster, [call], bots)
        if victim is not None:
            restart(victim)
    assert victim is not None and cluster.hosts()[victim.name]["state"] == "up"


def test_redis_restarted_and_flushed_loses_no_bot(cluster: Cluster) -> None:
    assert cluster.redis is not None
    full = [cluster.schedule() for _ in range(6)]
    for b in full:
        cluster.wait_state(b, {"in_call"})
    waiting = [cluster.schedule(max_duration_s=2) for _ in range(2)]  # tokens in Redis, hosts full
    # Due while Redis is down: their time comes, they are queued in the store, no token can be published.
    due = [cluster.schedule(max_duration_s=2, join_in_s=LEAD_S + 6) for _ in range(2)]
    time.sleep(0.5)
    assert {cluster.bot(b)["state"] for b in waiting} == {"queued"}
    cluster.redis.stop(signal.SIGKILL)  # everything in it is gone
    cluster.end_all(full[:4])  # four free slots, no broker to hand them out
    time.sleep(6.5)  # the due bots' time comes while Redis is down
    assert {cluster.bot(b)["state"] for b in due} == {"queued"}
    cluster.redis.start()  # empty
    for b in [*waiting, *due]:
        bot = cluster.wait_state(b, TERMINAL, timeout=30)
        assert (bot["state"], bot["end_reason"]) == ("ended", "max_duration"), bot
    for b in due:  # on time: in the meeting by join_at, started within the lead time
        bot = cluster.bot(b)
        assert at(bot["started_at"]) <= at(bot["join_at"]), bot
    runs = [run for w in cluster.workers for run in cluster.runs(w)]
    for b in [*waiting, *due]:
        assert runs.count(b) == 1, b
    cluster.end_all(full[4:])


def test_sigterm_with_drain_finish_takes_no_new_bot_and_exits_when_its_bots_end(cluster: Cluster) -> None:
    bots = [cluster.schedule(max_duration_s=8) for _ in range(3)]
    for b in bots:
        cluster.wait_state(b, {"in_call"})
    name = cluster.bot(bots[0])["host"]
    worker = next(w for w in cluster.workers if w.name == name)
    mine = [b for b in bots if cluster.bot(b)["host"] == name]
    worker.send(signal.SIGTERM)
    wait_until(lambda: cluster.hosts()[name]["state"] == "draining", 5, "the host draining")
    later = [cluster.schedule(max_duration_s=2) for _ in range(3)]
    for b in later:
        bot = cluster.wait_state(b, TERMINAL, timeout=30)
        assert bot["host"] != name and bot["state"] == "ended", bot
    assert worker.proc is not None and worker.proc.poll() is None  # still there: its bots run
    for b in mine:
        bot = cluster.wait_state(b, TERMINAL, timeout=30)
        assert (bot["state"], bot["end_reason"]) == ("ended", "max_duration"), bot
    assert worker.proc.wait(timeout=20) == 0
    assert cluster.hosts()[name]["state"] == "stopped"
    cluster.end_all(bots)
    restart(worker)


def test_sigterm_with_drain_handoff_moves_the_bots_to_another_host(cluster: Cluster) -> None:
    worker = cluster.workers[0]
    worker.stop()
    worker.drain = "handoff"
    worker.start()
    bots = [cluster.schedule() for _ in range(6)]  # every slot
    for b in bots:
        cluster.wait_state(b, {"in_call"})
    mine = [b for b in bots if cluster.bot(b)["host"] == worker.name]
    others = [b for b in bots if b not in mine]
    assert len(mine) == 2
    cluster.end_all(others[:2])  # room elsewhere
    worker.send(signal.SIGTERM)

    def moved_away(b: str) -> dict[str, Any] | None:
        bot = cluster.bot(b)
        return bot if bot["state"] == "in_call" and bot["host"] != worker.name else None

    for b in mine:
        moved = wait_until(functools.partial(moved_away, b), 20, f"bot {b} in its call on another host")
        assert [e["host"] for e in events(moved, "handed_back")] == [worker.name]
        assert moved["attempts"] == 2 and moved["end_reason"] is None
    assert worker.proc is not None and worker.proc.wait(timeout=20) == 0
    assert cluster.hosts()[worker.name]["state"] == "stopped"
    cluster.end_all([*mine, *others[2:]])
    restart(worker)


def test_a_bot_reads_the_services_launcher_without_its_broker() -> None:
    """A worker passes its environment to its bots without BOT_BROKER_URL (never given to a bot): a bot
    reading scheduler.launcher = celery must still start. Only the service needs the broker."""
    from bot.cluster.celery_launcher import ClusterOptions
    from bot.settings import load_settings

    env = {"BOT_SCHEDULER_LAUNCHER": "celery", "MILLIS_PRIVATE_KEY": "a-key"}
    settings = load_settings(env=env)
    assert settings.scheduler.launcher == "celery" and not settings.scheduler.broker_url
    with pytest.raises(ValueError, match="BOT_BROKER_URL"):
        ClusterOptions.from_settings(settings)


def test_kubernetes_manifests_are_valid() -> None:
    """deploy/kubernetes/ against the Kubernetes API schemas (strict: no unknown field); no cluster here."""
    import kubernetes_validate
    import yaml  # type: ignore[import-untyped]

    docs = {}
    for path in sorted(DEPLOY.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                kubernetes_validate.validate(doc, "1.30", strict=True)  # raises ValidationError
                docs[(doc["kind"], doc["metadata"]["name"])] = doc
    wanted = {("Deployment", "meeting-bot-api"), ("Deployment", "meeting-bot-worker")}
    assert wanted <= docs.keys(), docs.keys()
    worker = docs[("Deployment", "meeting-bot-worker")]["spec"]["template"]["spec"]
    # Bots leave their meetings before the pod goes: SIGTERM drains, and the grace period outlasts a call.
    assert worker["terminationGracePeriodSeconds"] >= 3600
    container = worker["containers"][0]
    assert container["args"][:1] == ["worker"] and "preStop" in container["lifecycle"]
    envs = {e["name"]: e for e in container["env"]}
    assert "secretKeyRef" in envs["MILLIS_PRIVATE_KEY"]["valueFrom"]


def test_compose_file_has_redis_and_scalable_workers() -> None:
    import yaml  # type: ignore[import-untyped]

    from tests.test_container import known_environment_variables

    services = yaml.safe_load((DEPLOY.parent.parent / "compose.yaml").read_text())["services"]
    bot, worker, redis = services["bot"], services["worker"], services["redis"]
    assert bot["environment"]["BOT_SCHEDULER_LAUNCHER"] == "${BOT_SCHEDULER_LAUNCHER:-celery}"
    assert (
        bot["environment"]["BOT_BROKER_URL"]
        == worker["environment"]["BOT_BROKER_URL"]
        == "redis://redis:6379/0"
    )
    assert worker["command"][0] == "worker" and "container_name" not in worker  # scalable: --scale worker=N
    assert worker["environment"]["BOT_DB_URL"] == bot["environment"]["BOT_DB_URL"]
    assert set(worker["environment"]) <= known_environment_variables()
    assert redis["healthcheck"]["test"] and worker["depends_on"]["redis"]["condition"] == "service_healthy"
