"""Configuration shared by every test module: the Hypothesis settings profiles.

Both profiles turn off Hypothesis's per-example deadline: a deadline measures wall-clock time,
which makes a test fail on a slow or busy machine without anything being wrong. Speed is the
benchmarks' business, not the tests'.

The "ci" profile is chosen when the ``CI`` environment variable is set. It derandomizes the
search, so a CI run is reproducible, and prints the blob that replays any failure. Set
``HYPOTHESIS_PROFILE`` to pick a profile by name instead.
"""

from __future__ import annotations

import os

from hypothesis import settings

# Build on Hypothesis's own "default" profile explicitly: without a parent a new profile
# inherits whatever profile is loaded, and Hypothesis loads its own "ci" one when CI is set.
settings.register_profile(
    "default", parent=settings.get_profile("default"), max_examples=200, deadline=None
)
settings.register_profile(
    "ci",
    parent=settings.get_profile("default"),
    derandomize=True,
    print_blob=True,
)

settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "default")
)
