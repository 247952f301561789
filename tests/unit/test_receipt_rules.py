"""What a delivery receipt may change: the first final one wins, repeats change nothing, later ones are only recorded."""

from __future__ import annotations

import pytest

from messaging.domain.receipts import (
    DELIVERY_FILTERS,
    DeliveryStatus,
    Outcome,
    ProviderStatus,
    Receipt,
    answer_status,
    decide,
)


def receipt(status: str) -> Receipt:
    return Receipt("provider-id-1", ProviderStatus(status))


def test_each_provider_status_maps_to_a_final_delivery_status():
    assert receipt("delivered").delivery_status is DeliveryStatus.DELIVERED
    assert receipt("undelivered").delivery_status is DeliveryStatus.UNDELIVERED
    assert receipt("failed").delivery_status is DeliveryStatus.UNDELIVERED


def test_the_first_final_receipt_of_a_sent_message_is_applied():
    assert decide(None, recorded_sent=True, receipt=receipt("delivered")) is Outcome.APPLIED


def test_a_receipt_before_the_message_is_recorded_sent_is_kept():
    assert decide(None, recorded_sent=False, receipt=receipt("delivered")) is Outcome.KEPT
    assert answer_status(recorded_sent=False) == 202 and answer_status(recorded_sent=True) == 200


@pytest.mark.parametrize("sent", [True, False])
def test_a_repeat_changes_nothing(sent):
    assert decide(DeliveryStatus.DELIVERED, recorded_sent=sent, receipt=receipt("delivered")) is Outcome.DUPLICATE
    assert decide(DeliveryStatus.UNDELIVERED, recorded_sent=sent, receipt=receipt("failed")) is Outcome.DUPLICATE


@pytest.mark.parametrize("current", [DeliveryStatus.DELIVERED, DeliveryStatus.EXPIRED])
def test_a_later_different_receipt_is_only_recorded(current):
    assert decide(current, recorded_sent=True, receipt=receipt("undelivered")) is Outcome.IGNORED


def test_the_list_filter_takes_every_delivery_status_and_unknown():
    assert DELIVERY_FILTERS == ("delivered", "undelivered", "expired", "unknown")
