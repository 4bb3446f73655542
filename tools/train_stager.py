"""Train the shipped sleep-stage model from the Walch et al. (2019) features.

Usage: python tools/train_stager.py [--data ../shared/data/walch2019] [--out FILE]

Writes ``sensord/staging/stager_model.json`` (plain numbers: standardisation, perceptron
weights, class priors, decision gains per feature set; transition matrix; version). The
model is trained on every subject in the folder; its held-out accuracy is measured by
``sensord validate walch --loso`` (leave-one-subject-out), never on the training data.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sensord.datasets import load_walch  # noqa: E402
from sensord.staging.stager import DEFAULT_MODEL  # noqa: E402
from sensord.staging.train import train_stager  # noqa: E402

VERSION = "sensord-stager-1.1"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "walch2019"))
    ap.add_argument("--out", default=str(DEFAULT_MODEL))
    args = ap.parse_args()
    nights = load_walch(args.data)
    model = train_stager(nights, version=VERSION)
    Path(args.out).write_text(json.dumps(model.to_dict(), separators=(",", ":")) + "\n")
    print(f"wrote {args.out}: {model.version}, {len(nights)} subjects")


if __name__ == "__main__":
    main()
