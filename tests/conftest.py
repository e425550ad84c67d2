"""Shared pytest configuration.

Hypothesis: the default profile is derandomized (the same examples on every machine and every run, so a
green suite stays green and a red one reproduces) with no per-example deadline (timing depends on the
machine's load). ``HYPOTHESIS_PROFILE=explore make test-fast`` draws fresh random examples, 5x as many,
to look for new counterexamples while developing.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "survpgc", derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None
)
settings.register_profile(
    "explore", deadline=None, suppress_health_check=[HealthCheck.too_slow], max_examples=500, database=None
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "survpgc"))
