"""Webhook deliveries to a real local HTTP server: signed, in order, retried, each once."""

from __future__ import annotations

from bot.events import Ended, EventBus, InCall, Joining
from bot.outcome import EndedBy, EndReason
from bot.service.webhooks import WebhookConfig, WebhookSender, sign, verify
from tests.webhook_receiver import WebhookReceiver


async def test_events_arrive_signed_in_order_after_retries() -> None:
    receiver = WebhookReceiver("s3cret", fail_first=2)
    await receiver.start()
    sender = WebhookSender(WebhookConfig(receiver.url, "s3cret", retries=3, backoff_s=0.05))
    sender.start()
    bus = EventBus()
    bus.subscribe(sender)
    try:
        bus.emit(Joining(platform="meet", meeting_id="abc-defg-hij", name="AI Agent"))
        bus.emit(InCall())
        bus.emit(Ended(reason=EndReason.HOST_ENDED, by=EndedBy.MEETING))
        await sender.close()
    finally:
        await receiver.close()
    assert receiver.kinds() == ["joining", "in_call", "ended"]
    assert receiver.events[2]["reason"] == "host_ended"
    assert receiver.bad_signatures == 0
    assert sender.delivered == 3
    assert receiver.requests == 5  # two refused with 503, then each event once


async def test_wrong_secret_is_rejected_and_gives_up_bounded() -> None:
    receiver = WebhookReceiver("right")
    await receiver.start()
    sender = WebhookSender(WebhookConfig(receiver.url, "wrong", retries=2, backoff_s=0.01))
    sender.start()
    try:
        sender(EventBus().emit(InCall()))
        await sender.close()
    finally:
        await receiver.close()
    assert receiver.events == []
    assert receiver.bad_signatures == 1  # a 4xx is final: no retry storm
    assert sender.failed == 1


def test_signature_roundtrip() -> None:
    sig = sign("k", "100", b"{}")
    assert verify("k", "100", b"{}", sig)
    assert not verify("k", "101", b"{}", sig)
    assert not verify("other", "100", b"{}", sig)
