"""One country's holidays without the other 249: `holidays.country_holidays("FR")` imports
`holidays.countries.france`, and importing it runs the package's `__init__`, which imports every
country module (~250 of them: 70 ms, a tenth of a dry run's start-up). `preload` imports the
one module the lazy loader will ask for, the package standing in only while it loads; the
calendar is then built by `holidays.country_holidays` as before, from the very same class."""
from __future__ import annotations

import importlib
import importlib.util
import sys

import holidays
from holidays.registry import IMPORT_LOCK, EntityLoader

_PACKAGE = "holidays.countries"


def preload(country: str) -> None:
    """Import the module of `country`'s calendar alone, if nothing loaded the countries yet.
    An unknown code does nothing here (country_holidays refuses it as before)."""
    entity = getattr(holidays, country, None)
    if not isinstance(entity, EntityLoader) or _PACKAGE in sys.modules:
        return
    module = entity.module_name
    if not module.startswith(_PACKAGE + ".") or module in sys.modules:
        return
    with IMPORT_LOCK:  # the lock holidays' own lazy loader imports under
        if _PACKAGE in sys.modules:
            return
        spec = importlib.util.find_spec(_PACKAGE)
        if spec is None:
            return
        sys.modules[_PACKAGE] = importlib.util.module_from_spec(spec)  # __path__, no __init__
        try:
            importlib.import_module(module)
        finally:  # whoever imports the package later gets the real one (it reuses this module)
            del sys.modules[_PACKAGE]
