"""The combined match decision (services/match_signals.py): each gate, the evidence, the reviewer's line."""

from __future__ import annotations

from mimamori.services.match_signals import Decision, PdqScore, Thresholds, combine, pdq_similarity, summary

CASE = Thresholds(face=0.94)


def test_a_face_above_the_case_threshold_matches() -> None:
    decision = combine(face=0.951, thresholds=CASE)
    assert decision == Decision(True, ("face",), {"face": 0.951}, {})
    assert not combine(face=0.93, thresholds=CASE).matched


def test_a_close_pdq_hash_matches_when_the_face_does_not() -> None:
    """A mosaicked face: similarity far under the threshold, the picture's hash 12 bits away."""
    decision = combine(face=0.41, pdq=PdqScore(12, 90, "rotate90"), thresholds=CASE)
    assert decision.matched and decision.fired == ("pdq",)
    assert decision.scores == {"face": 0.41, "pdq": 12}
    assert decision.evidence() == {"fired": ["pdq"], "scores": {"face": 0.41, "pdq": 12},
                                   "details": {"pdq": {"quality": 90, "variant": "rotate90", "frame_ms": 0}}}


def test_pdq_gates_distance_and_quality() -> None:
    assert combine(pdq=PdqScore(31, 50), thresholds=CASE).matched  # both limits inclusive
    assert not combine(pdq=PdqScore(32, 100), thresholds=CASE).matched
    assert not combine(pdq=PdqScore(0, 49), thresholds=CASE).matched  # a flat image matches everything
    assert combine(pdq=PdqScore(40, 80), thresholds=Thresholds(pdq_max_distance=40)).matched


def test_both_fire_and_signals_that_are_off_never_fire() -> None:
    both = combine(face=0.99, pdq=PdqScore(0, 100), thresholds=CASE)
    assert both.fired == ("face", "pdq")
    assert not combine(face=0.99, thresholds=Thresholds(face=None)).matched
    assert not combine(crop=0.99, thresholds=CASE).matched  # no crop threshold: off
    assert combine(crop=0.8, thresholds=Thresholds(crop_threshold=0.75)).fired == ("crop",)
    assert not combine(thresholds=CASE).matched


def test_the_reviewers_line() -> None:
    assert summary(None, 0.953) == "face 0.95"  # a match from before the evidence column
    assert summary(combine(face=0.71, pdq=PdqScore(12, 90), thresholds=Thresholds(face=0.7)).evidence(),
                   0.71) == "face 0.71 / PDQ distance 12"
    assert summary(combine(pdq=PdqScore(3, 90, "flip_x"), thresholds=CASE).evidence(), 0.98) == \
        "PDQ distance 3 (flip x)"
    assert pdq_similarity(0) == 1.0 and pdq_similarity(64) == 0.75
