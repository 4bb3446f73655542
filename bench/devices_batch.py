"""Batch vs one-by-one decoding of GATT payloads (sensord.devices).

Prints, for synthetic but realistic batches (30,000 Heart Rate Measurements with RR,
40,000 Polar PMD accelerometer frames raw and delta-compressed, 40,000 InfiniTime motion
notifications), the best-of-N time of ``decode_batch`` and of calling ``decode_one`` on
every payload, and their ratio. Best-of-N because the machine may be shared: the
minimum is the least disturbed run. Run: ``python bench/devices_batch.py``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from sensord import devices
from sensord.devices import heart_rate as hrs
from sensord.devices import infinitime as itm
from sensord.devices import polar_pmd as pmd


def best_ms(fn: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best * 1e3


def main() -> None:
    rng = np.random.default_rng(1)
    n_hr, n_acc, per = 30_000, 40_000, 36
    hr_payloads = [
        hrs.encode_hrm(int(rng.integers(40, 120)),
                       [int(x) for x in rng.integers(600, 1200, size=rng.integers(0, 3))],
                       contact=True)
        for _ in range(n_hr)
    ]
    hr_t = np.arange(n_hr, dtype=np.int64) * 1_000_000_000
    acc_t = np.arange(n_acc, dtype=np.int64) * 720_000_000 + 50_000_000
    sensor = [int((k + 1) * per * 20e6) for k in range(n_acc)]
    walk = np.cumsum(rng.integers(-40, 40, size=(n_acc * per, 3)), axis=0) % 4000 - 2000
    raw = [pmd.encode_acc_raw(walk[k * per:(k + 1) * per], sensor[k], 1) for k in range(n_acc)]
    delta = [pmd.encode_acc_delta(walk[k * per:(k + 1) * per], sensor[k], 1)
             for k in range(n_acc)]
    motion = [itm.encode_motion_values(*map(int, rng.integers(-2000, 2000, 3)))
              for _ in range(n_acc)]
    cases = [
        ("Heart Rate Measurement 0x2A37", "2a37", hr_payloads, hr_t),
        ("PMD ACC raw frame type 1 (H10)", pmd.PMD_DATA, raw, acc_t),
        ("PMD ACC delta frame 0x81 (Verity)", pmd.PMD_DATA, delta, acc_t),
        ("InfiniTime motion values", itm.MOTION_VALUES, motion, acc_t),
    ]
    print(f"{'payloads':<36}{'n':>8}{'batch ms':>10}{'one-by-one ms':>15}{'ratio':>8}")
    for name, char, payloads, recv in cases:
        res = devices.decode_batch(char, payloads, recv)
        assert not res.errors
        batch = best_ms(lambda c=char, p=payloads, r=recv: devices.decode_batch(c, p, r), 7)
        single = best_ms(lambda c=char, p=payloads: [devices.decode_one(c, x) for x in p], 2)
        print(f"{name:<36}{len(payloads):>8}{batch:>10.1f}{single:>15.1f}{single / batch:>7.1f}x")


if __name__ == "__main__":
    main()
