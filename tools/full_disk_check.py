"""Full-disk check of the local store on a real, tiny file system (needs root: tmpfs).

CI cannot mount file systems, so the test suite covers a full store with SQLite's
``max_page_count`` (same SQLITE_FULL error); this script checks the part only a real full
disk shows: the write-ahead log cannot be checkpointed, so recording deliveries needs the
reserve file. Usage: ``sudo python tools/full_disk_check.py``; prints what happens and
exits 1 if the outbox cannot drain or accept new data afterwards.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sensord.errors import StoreError
from sensord.store.local import LocalStore


def main() -> int:
    mnt = Path(tempfile.mkdtemp(prefix="sensord-full-"))
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], check=True)
    try:
        store = LocalStore(mnt / "sensord.sqlite", reserve_bytes=300_000)
        queued = 0
        try:
            for i in range(10_000):
                lines = [f"m,p=a v={j}i {j}" for j in range(i * 100, (i + 1) * 100)]
                queued += store.add_lines(lines, source="night")
        except StoreError as exc:
            print(f"disk full after {queued} lines, as expected:\n  {exc}")
        drained = 0
        while (batch := store.batch(1000, 10**9)) is not None:
            store.accept(batch)
            drained += batch.n_lines
        print(f"drained {drained} of {queued} lines on the full disk")
        added = store.add_lines([f"m v={j} {j}" for j in range(3000)])
        print(
            f"then queued {added} new lines; files: "
            f"{ {f: os.path.getsize(mnt / f) for f in os.listdir(mnt)} }"
        )
        store.close()
        return 0 if drained == queued and added == 3000 else 1
    finally:
        subprocess.run(["umount", str(mnt)], check=False)
        mnt.rmdir()


if __name__ == "__main__":
    sys.exit(main())
