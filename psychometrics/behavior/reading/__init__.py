"""Reading model replies: text helpers, numbers, option choices, numbered answers and formatting checks.

Reading is strict first, then lenient. A reply that is empty, declines, names two different options,
gives competing numbers (a range, "30 or 40", a share of an unknown total) or cannot be read is
*missing* (``score=None``), never scored as 0; ``detail`` says why.
"""
