"""Range checks for the config dataclasses' validate(): one message shape everywhere, "batch_size must be >= 1
(got 0)", so a bad value is refused before work starts instead of failing later as a ZeroDivisionError."""

from __future__ import annotations

import math


def check_range(name: str, value, *, ge=None, gt=None, le=None, lt=None, note: str = "") -> None:
    """ValueError unless `value` is a finite number within the bounds given (NaN never is).
    `note` says what a special value means, e.g. "0 = off"."""
    ok = isinstance(value, (int, float)) and math.isfinite(value)
    ok = ok and (ge is None or value >= ge) and (gt is None or value > gt)
    ok = ok and (le is None or value <= le) and (lt is None or value < lt)
    if ok:
        return
    lo = f"[{ge}" if ge is not None else f"({gt}" if gt is not None else None
    hi = f"{le}]" if le is not None else f"{lt})" if lt is not None else None
    if lo and hi:
        allowed = f"in {lo}, {hi}"
    elif lo:
        allowed = f">= {ge}" if ge is not None else f"> {gt}"
    elif hi:
        allowed = f"<= {le}" if le is not None else f"< {lt}"
    else:
        allowed = "a finite number"
    raise ValueError(f"{name} must be {allowed}{f' ({note})' if note else ''} (got {value})")


def check_choice(name: str, value, allowed) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(str, allowed))} (got '{value}')")
