"""Sleep-staging core: epochs, motion and cardiac features, scorers, hypnogram, metrics.

Pure numpy (scipy only in training and two offline scorers): arrays in, values out, no I/O
except reading the shipped model file.
The entry point is :func:`score_night`.
"""

from sensord.staging.core import NightResult, score_night
from sensord.staging.hypnogram import STAGE_NAMES, Hypnogram
from sensord.staging.stager import StagerModel, load_model

__all__ = ["STAGE_NAMES", "Hypnogram", "NightResult", "StagerModel", "load_model", "score_night"]
