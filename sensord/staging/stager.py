"""Four-class sleep stager: per-epoch model + hidden Markov smoothing.

Per epoch, a classifier (the average of a multinomial logistic regression and a
one-hidden-layer perceptron, both plain arrays) maps the feature set the epoch has -- ``hr+motion``,
``hr`` or ``motion`` (:mod:`sensord.staging.features`) -- to wake/light/deep/REM
probabilities. Dividing them by the class prior the classifier was trained under gives
scaled emission likelihoods (Bourlard & Morgan 1994, hybrid HMM/ANN); forward-backward
over the night with the transition matrix counted from the training hypnograms
(:mod:`sensord.staging.hmm`) gives the posterior probabilities stored per epoch; the
stage is the most probable class. Unscored epochs get a flat emission, so the chain
bridges them, but they stay unscored in the output.

The model file is JSON holding only numbers and names, written by
``tools/train_stager.py``; its ``version`` is stored with every result.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from sensord.errors import StagingError
from sensord.staging.hmm import forward_backward

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

FEATURE_SETS = ("hr+motion", "hr", "motion")
"""Feature-set names, in order of preference; index + 1 is the per-epoch set code."""
DEFAULT_MODEL = Path(__file__).with_name("stager_model.json")


@dataclass(frozen=True, slots=True)
class EpochClassifier:
    """Standardise, then average the class probabilities of the member models.

    A member is ``(W, b)`` (multinomial logistic regression) or ``(W1, b1, W2, b2)``
    (one tanh hidden layer, then a linear layer); each ends in a softmax.
    """

    mean: F64
    scale: F64
    members: tuple[tuple[F64, ...], ...]
    prior: F64  # class distribution the members were trained under (after weighting)

    def proba(self, x: F64) -> F64:
        """Class probabilities ``(n, 4)`` for rows of ``x`` (finite rows only)."""
        z0 = (np.asarray(x, dtype=np.float64) - self.mean) / self.scale
        total = np.zeros((z0.shape[0], self.prior.size))
        for layers in self.members:  # two members: an ensemble, not a loop over epochs
            z = z0
            if len(layers) == 4:
                z = np.tanh(z @ layers[0] + layers[1])
                z = z @ layers[2] + layers[3]
            else:
                z = z @ layers[0] + layers[1]
            z = z - z.max(axis=1, keepdims=True)
            p = np.exp(z)
            total += p / p.sum(axis=1, keepdims=True)
        return total / len(self.members)

    def to_dict(self) -> dict[str, Any]:
        return {
            "mean": self.mean.tolist(),
            "scale": self.scale.tolist(),
            "members": [[layer.tolist() for layer in m] for m in self.members],
            "prior": self.prior.tolist(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EpochClassifier:
        return cls(
            np.asarray(d["mean"], dtype=np.float64),
            np.asarray(d["scale"], dtype=np.float64),
            tuple(tuple(np.asarray(layer, dtype=np.float64) for layer in m)
                  for m in d["members"]),
            np.asarray(d["prior"], dtype=np.float64),
        )


@dataclass(frozen=True, slots=True)
class StagerModel:
    """Everything the stager needs; see :func:`load_model`."""

    version: str
    classifiers: dict[str, EpochClassifier]
    transition: F64
    initial: F64
    smooth: bool = True
    trained_on: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "trained_on": self.trained_on,
            "classes": ["wake", "light", "deep", "rem"],
            "smooth": self.smooth,
            "transition": self.transition.tolist(),
            "initial": self.initial.tolist(),
            "classifiers": {k: v.to_dict() for k, v in self.classifiers.items()},
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StagerModel:
        try:
            model = cls(
                str(d["version"]),
                {k: EpochClassifier.from_dict(v) for k, v in d["classifiers"].items()},
                np.asarray(d["transition"], dtype=np.float64),
                np.asarray(d["initial"], dtype=np.float64),
                bool(d.get("smooth", True)),
                str(d.get("trained_on", "")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise StagingError(f"stager model is malformed: {exc!r}") from exc
        if model.transition.shape != (4, 4) or model.initial.shape != (4,):
            raise StagingError("stager model: transition must be 4x4 and initial length 4")
        unknown = set(model.classifiers) - set(FEATURE_SETS)
        if unknown:
            raise StagingError(f"stager model: unknown feature sets {sorted(unknown)}")
        return model


def load_model(path: str | Path | None = None) -> StagerModel:
    """Read a model file (default: the one shipped in ``sensord/staging``)."""
    p = Path(path) if path is not None else DEFAULT_MODEL
    try:
        data = json.loads(p.read_text())
    except (OSError, ValueError) as exc:
        raise StagingError(f"cannot read stager model {p}: {exc}") from exc
    return StagerModel.from_dict(data)


def usable_sets(has_hr: npt.NDArray[np.bool_], has_motion: npt.NDArray[np.bool_]
                ) -> dict[str, npt.NDArray[np.bool_]]:
    """The ``usable`` of :func:`stage`: the epochs whose inputs each feature set needs."""
    return {"hr+motion": has_hr & has_motion, "hr": has_hr, "motion": has_motion}


def design_builders(build: Callable[[F64 | None, F64 | None], F64], count_n: F64 | None,
                    hr_n: F64 | None) -> dict[str, Callable[[], F64]]:
    """The ``design`` of :func:`stage`: each set's design, ``build(count, hr)`` with the
    streams that set uses, built only when some epoch is left for it."""
    return {"hr+motion": lambda: build(count_n, hr_n), "hr": lambda: build(None, hr_n),
            "motion": lambda: build(count_n, None)}


def emissions(
    model: StagerModel,
    design: Mapping[str, F64 | Callable[[], F64]],
    usable: dict[str, npt.NDArray[np.bool_]],
) -> tuple[F64, npt.NDArray[np.int8]]:
    """Scaled emission likelihoods ``(n, 4)`` (class probabilities over the training prior;
    ones where unscored) and the feature set used per epoch (1-based index into
    :data:`FEATURE_SETS`, 0 none): each epoch takes the first set, in order of preference,
    whose inputs it has and whose design row is finite. Arguments as :func:`stage`."""
    n = next(iter(usable.values())).shape[0] if usable else 0
    emission = np.ones((n, 4))
    set_code = np.zeros(n, dtype=np.int8)
    for code, name in enumerate(FEATURE_SETS, start=1):
        clf = model.classifiers.get(name)
        if clf is None or name not in design:
            continue
        left = usable[name] & (set_code == 0)
        if not left.any():
            continue
        built = design[name]
        x = built() if callable(built) else built
        sel = left & np.isfinite(x).all(axis=1)
        if not sel.any():
            continue
        p = clf.proba(x[sel])
        emission[sel] = p / clf.prior
        set_code[sel] = code
    return emission, set_code


def stage(
    model: StagerModel,
    design: Mapping[str, F64 | Callable[[], F64]],
    usable: dict[str, npt.NDArray[np.bool_]],
) -> tuple[npt.NDArray[np.int8], F64, npt.NDArray[np.int8]]:
    """Stage every epoch.

    Parameters
    ----------
    model
        The stager model.
    design
        Feature-set name -> design matrix ``(n, p)`` (:func:`features.design_matrix`), or a
        function that builds it: called only when some epoch is left for that set (a night
        where every epoch has heart rate and motion never builds the other two).
    usable
        Feature-set name -> epochs for which that set's inputs are present (all the same
        length, the number of epochs).

    Returns
    -------
    stages, probabilities, set_code
        ``int8`` stages (-1 unscored), ``(n, 4)`` posteriors (``NaN`` rows unscored) and
        the feature set used per epoch (1-based index into :data:`FEATURE_SETS`, 0 none).
    """
    emission, set_code = emissions(model, design, usable)
    n = emission.shape[0]
    scored = set_code > 0
    if model.smooth and n:
        post = forward_backward(emission, model.transition, model.initial)
    else:
        post = emission * model.initial
        post = post / post.sum(axis=1, keepdims=True)
    stages = np.where(scored, np.argmax(post, axis=1), -1).astype(np.int8)
    probs = np.where(scored[:, None], post, np.nan)
    return stages, probs, set_code
