"""Every size psytest takes from a file, an option or a run directory has a stated limit.

Each limit is checked before anything is allocated for it, and exceeding one is a one-line error that
names the file, the field and the limit (pydantic's field constraints for the file formats, explicit
checks for sizes that are computed, such as a response scale's width). The limits are far above any
real instrument, persona set or task battery (the largest shipped inventory has 300 items and 5 response
options), and far below what would take the machine down. ``docs/security.md`` lists them in one table,
which is :data:`TABLE` (``tests/test_hostile_crashes.py`` checks that the two agree).
"""

from __future__ import annotations

# -- files ------------------------------------------------------------------------------------------
YAML_BYTES = 2_000_000  # an inventory, persona, design, task, keys, router or study file
YAML_VALUES = 1_000_000  # values after expanding every alias
YAML_MERGED = 100_000  # entries that merge keys ('<<') bring in
JSON_BYTES = 20_000_000  # manifest.json, baseline.json
ITEM_DATA_BYTES = 500_000_000  # psytest analyze's CSV
ITEM_DATA_ROWS = 1_000_000
ITEM_DATA_CELLS = 50_000_000  # rows x items analysed
CSV_CELL_CHARS = 131_072  # one cell of that CSV (the csv module's own limit)
CSV_LINE_CHARS = 10_000_000  # one line of it (a file without newlines, such as /dev/zero, is one line)

# -- texts (characters) -----------------------------------------------------------------------------
SHORT_TEXT = 2_000  # a name, a label, an item or a paraphrase, an option, a citation
LONG_TEXT = 100_000  # instructions, a description, a persona, a task turn

# -- inventories ------------------------------------------------------------------------------------
RESPONSE_OPTIONS = 101  # a response scale's width, max - min + 1 (a 0..100 slider)
RESPONSE_VALUE = 10_000  # the largest |min| or |max| of a response scale
ITEMS = 5_000
PARAPHRASES = 20  # per item
SCALES = 1_000  # scales, and facets, of one inventory
NORM_GROUPS = 1_000

# -- personas, designs, runs ------------------------------------------------------------------------
PERSONAS = 10_000  # in one persona set (and persona ids chosen from it)
ORDER_LEVELS = 100  # entries of option_orders
TEMPLATE_LEVELS = 20  # entries of templates
TEMPERATURE_LEVELS = 20  # entries of temperature
RANDOM_ORDERS = 10_000  # N of random:N
SAMPLES = 10_000  # per design cell (administer and behave)
ITEMS_PER_REQUEST = 500
ITEM_ORDERS = 1_000
MAX_TOKENS = 4_096  # reply limit of a design or a task
PLANNED_REQUESTS = 2_000_000  # one questionnaire run
PLANNED_CONVERSATIONS = 2_000_000  # one behaviour run
STUDY_MODELS = 1_000  # models in one study file

# -- behavioural tasks ------------------------------------------------------------------------------
VARIANTS = 1_000  # per task
TURNS = 6  # per variant
TASK_OPTIONS = 8  # per variant (labels A-H)
TASK_ITEMS = 100  # listed items (names, questions, planted errors) per variant
CHECKS = 50  # formatting checks per variant
SERVER_BODY_BYTES = 8 << 20
FORMAT_WIDTH = 100  # a width or precision in a turn's placeholder ({amount:>8})
REPLY_CHARS = 100_000  # a model reply a behaviour scorer reads (a task's max_tokens allows ~25,000)
PATTERN_CHARS = 1_000  # a regular expression in a task file
PATTERN_SECONDS = 1.0  # one search of one reply by such a pattern (see psychometrics.behavior.patterns)

TABLE: list[tuple[str, str, str]] = [
    ("YAML file (inventory, personas, design, task, keys, router, study)", f"{YAML_BYTES:,} bytes",
     "read no further"),
    ("YAML values after expanding aliases", f"{YAML_VALUES:,}", "refused without expanding"),
    ("YAML entries brought in by merge keys", f"{YAML_MERGED:,}", "counted before PyYAML merges"),
    ("manifest.json, baseline.json, --reference-loadings CSV", f"{JSON_BYTES:,} bytes", "read no further; nesting beyond the parser's "
     "depth is an error too"),
    ("`psytest analyze` CSV, `validity --scores` CSV", f"{ITEM_DATA_BYTES:,} bytes, {ITEM_DATA_ROWS:,} rows, {ITEM_DATA_CELLS:,} "
     f"cells (rows x items), {CSV_LINE_CHARS:,} characters a line, {CSV_CELL_CHARS:,} a cell", "checked as it is read"),
    ("a run's derived CSV read by `reproduce`", f"{ITEM_DATA_BYTES:,} bytes", "regular files only"),
    ("short text: a name, label, item, paraphrase, option, citation", f"{SHORT_TEXT:,} characters", ""),
    ("long text: instructions, description, persona, task turn", f"{LONG_TEXT:,} characters", ""),
    ("response scale width (max - min + 1)", f"{RESPONSE_OPTIONS:,} options", "checked before the values are listed"),
    ("response values (min, max)", f"-{RESPONSE_VALUE:,} to {RESPONSE_VALUE:,}", ""),
    ("items of an inventory", f"{ITEMS:,}", ""),
    ("paraphrases of an item", f"{PARAPHRASES:,}", ""),
    ("scales, facets of an inventory", f"{SCALES:,} each", ""),
    ("norm groups of an inventory", f"{NORM_GROUPS:,}", ""),
    ("personas in a set (and --persona-ids)", f"{PERSONAS:,}", ""),
    ("design levels: option orders, templates, temperatures",
     f"{ORDER_LEVELS:,}, {TEMPLATE_LEVELS:,}, {TEMPERATURE_LEVELS:,} entries", ""),
    ("random:N option orders", f"{RANDOM_ORDERS:,}", ""),
    ("samples per cell (administer, behave)", f"{SAMPLES:,}", ""),
    ("items per request, item orders", f"{ITEMS_PER_REQUEST:,}, {ITEM_ORDERS:,}", ""),
    ("max_tokens (design, task)", f"{MAX_TOKENS:,}", ""),
    ("requests planned by one run", f"{PLANNED_REQUESTS:,}", "counted before planning, --dry-run too"),
    ("conversations planned by one behaviour run", f"{PLANNED_CONVERSATIONS:,}", "counted before planning"),
    ("models in a study file", f"{STUDY_MODELS:,}", "each model's run has the limits above"),
    ("variants of a task", f"{VARIANTS:,}", ""),
    ("turns of a variant", f"{TURNS:,}", ""),
    ("options, listed items, checks of a variant", f"{TASK_OPTIONS:,}, {TASK_ITEMS:,}, {CHECKS:,}", ""),
    ("model reply read by a behaviour scorer", f"{REPLY_CHARS:,} characters", "a longer one (a server that "
     "ignores max_tokens) is missing data, reason too_long"),
    ("a server's response body (OpenAI-compatible servers, and OpenAI-style providers through litellm)", f"{SERVER_BODY_BYTES:,} bytes", "a larger one fails "
     "that request"),
    ("width or precision of a placeholder in a task turn", f"{FORMAT_WIDTH:,}", "and a turn once filled is "
     "long text too"),
    ("regular expression in a task file", f"{PATTERN_CHARS:,} characters; {PATTERN_SECONDS:g} s a search",
     "no backreferences or nested quantifiers; see below"),
]


def check_regular_file(path, max_bytes: int, what: str) -> None:
    """One-line error unless ``path`` is a regular file of at most ``max_bytes`` (not ``/dev/zero``, a FIFO or
    a directory, which pandas would read for ever or fail on). FileNotFoundError is left to the caller."""
    import os
    import stat

    from psychometrics.errors import PsytestError

    status = os.stat(path)
    if not stat.S_ISREG(status.st_mode):
        raise PsytestError(f"{path}: not a regular file; give a {what}")
    if status.st_size > max_bytes:
        raise PsytestError(f"{path}: larger than the {max_bytes:,} bytes a {what} may have; check that it is one")


def read_text(path, max_bytes: int, what: str) -> str:
    """The UTF-8 text of ``path``, reading at most ``max_bytes`` + 1 bytes (so ``/dev/zero`` is refused too);
    ``what`` names the file's kind in the one-line error."""
    from psychometrics.errors import PsytestError

    with open(path, "rb") as handle:
        data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise PsytestError(f"{path}: larger than the {max_bytes:,} bytes a {what} may have; check that it is one")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise PsytestError(f"{path}: not UTF-8 text; check that it is a {what}") from None


def read_json(path, what: str, max_bytes: int = JSON_BYTES):
    """The JSON document in ``path`` (see :func:`read_text`); malformed or too deeply nested JSON is a
    one-line error naming the file. Missing files raise FileNotFoundError for the caller to word."""
    import json

    from psychometrics.errors import PsytestError

    text = read_text(path, max_bytes, what)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise PsytestError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}); a damaged {what}?") from None
    except RecursionError:
        raise PsytestError(f"{path}: JSON nested too deeply to read; a damaged {what}?") from None
