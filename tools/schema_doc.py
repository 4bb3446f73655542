"""Regenerate the schema tables in docs/storage.md from sensord/store/schema.py.

Usage: ``python tools/schema_doc.py [docs/storage.md]``. ``tests/test_store_schema.py``
fails when the document and the schema disagree.
"""

from __future__ import annotations

import sys
from pathlib import Path

from sensord.store.schema import render_into


def main() -> None:
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/storage.md")
    target.write_text(render_into(target.read_text(encoding="utf-8")), encoding="utf-8")
    print(f"updated {target}")


if __name__ == "__main__":
    main()
