"""Phone numbers: everything becomes E.164 through phonenumbers, in one place."""
from __future__ import annotations

import phonenumbers


def e164(raw: str, default_region: str) -> str | None:
    """The number in E.164, or None if phonenumbers does not call it valid."""
    try:
        parsed = phonenumbers.parse(raw, default_region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(parsed):
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
