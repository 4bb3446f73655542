"""Response classification and backoff: pure decisions, checked against hand-written cases."""

from __future__ import annotations

import pytest

from sensord.store.policy import (
    Backoff,
    Verdict,
    classify_response,
    network_failure,
    server_message,
    v1_precision,
)

PARTIAL = (
    b'{"error":"partial write: field type conflict: input field \\"v\\" on measurement '
    b'\\"m\\" is type integer, already exists as type float dropped=3"}\n'
)


@pytest.mark.parametrize(
    ("status", "body", "verdict", "dropped"),
    [
        (204, b"", Verdict.ACCEPTED, None),
        (200, b"{}", Verdict.ACCEPTED, None),
        (413, b'{"error":"Request Entity Too Large"}', Verdict.TOO_LARGE, None),
        (400, PARTIAL, Verdict.REFUSED, 3),
        (400, b'{"error":"unable to parse \'m v=\': missing field value"}', Verdict.REFUSED, None),
        (
            422,
            b'{"code":"unprocessable entity","message":"failed to parse"}',
            Verdict.REFUSED,
            None,
        ),
        (401, b'{"error":"authorization failed"}', Verdict.AUTH, None),
        (403, b"", Verdict.AUTH, None),
        (404, b'{"error":"database not found: \\"x\\""}', Verdict.MISSING, None),
        (500, b'{"error":"timeout"}', Verdict.RETRY, None),
        (503, b"", Verdict.RETRY, None),
        (429, b"", Verdict.RETRY, None),
        (408, b"", Verdict.RETRY, None),
    ],
)
def test_classify_response(status: int, body: bytes, verdict: Verdict, dropped: int | None) -> None:
    out = classify_response(status, body)
    assert out.verdict is verdict
    assert out.status == status
    assert out.dropped == dropped


def test_server_message_reads_1x_and_2x_bodies() -> None:
    assert server_message(PARTIAL).startswith('partial write: field type conflict: input field "v"')
    assert server_message(b'{"code":"invalid","message":"bad bucket"}') == "invalid: bad bucket"
    assert server_message(b"plain text\n") == "plain text"
    assert network_failure("refused").verdict is Verdict.RETRY


def test_v1_precision_names() -> None:
    # InfluxDB 1.x /write API: precision=[n,u,ms,s,m,h]; "us" would silently mean ns
    assert [v1_precision(p) for p in ("ns", "us", "ms", "s")] == ["n", "u", "ms", "s"]
    with pytest.raises(ValueError, match="unknown precision 'u'"):
        v1_precision("u")


def test_backoff_with_injected_random_source() -> None:
    draws = iter([0.0, 0.5, 0.999, 0.25, 0.0])
    b = Backoff(initial_s=1.0, max_s=10.0, factor=2.0, jitter=0.5, rand=lambda: next(draws))
    # nominal 1, 2, 4, 8, 10 (capped); delay = nominal * (0.5 + 0.5 u)
    assert b.delay_s(0) == 0.5
    assert b.delay_s(1) == 2 * 0.75
    assert b.delay_s(2) == pytest.approx(4 * (0.5 + 0.5 * 0.999))
    assert b.delay_s(3) == 8 * 0.625
    assert b.delay_s(4) == 5.0
    assert b.nominal_s(10_000) == 10.0  # no overflow


def test_backoff_without_jitter_and_validation() -> None:
    b = Backoff(initial_s=0.5, max_s=60, factor=3, jitter=0.0, rand=lambda: 0.9)
    assert [b.delay_s(i) for i in range(5)] == [0.5, 1.5, 4.5, 13.5, 40.5]
    with pytest.raises(ValueError):
        Backoff(initial_s=0)
    with pytest.raises(ValueError):
        Backoff(jitter=1.5)
    with pytest.raises(ValueError):
        b.nominal_s(-1)
