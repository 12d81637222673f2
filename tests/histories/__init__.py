"""Saved histories of representative Temporal runs, replayed against the current workflow code in CI
(tests/unit/test_temporal_replay.py); capture.py makes them."""
