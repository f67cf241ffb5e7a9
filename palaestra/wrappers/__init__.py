"""Gymnasium wrappers, one concern each."""

from palaestra.wrappers.candidate_actions import CandidateActions
from palaestra.wrappers.sticky_actions import StickyActions

__all__ = ["CandidateActions", "StickyActions"]
