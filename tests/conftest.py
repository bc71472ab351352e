"""Shared test set-up.

litellm fetches its model cost map from the network when imported unless told to use the bundled copy;
offline that is seconds of retries per process. Set here, before any test module imports litellm (and
inherited by the psytest subprocesses the tests start).

``COLUMNS`` is removed: psytest's output depends on the console width, and tests that check the wrapping
set it themselves; an outer shell's or CI's value must not change what the other tests read.
"""

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.pop("COLUMNS", None)
