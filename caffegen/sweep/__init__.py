"""Sweeps: a spec (:mod:`.spec`) expanded into variants, run by the driver (:mod:`.driver`) through an
executor (:mod:`.executor`), watched (:mod:`.monitor`), stored (:mod:`.store`) and shown (:mod:`.progress`)."""
from .spec import RunSettings, SweepSpec, Variant, expand, load_spec, parse_spec

__all__ = ["RunSettings", "SweepSpec", "Variant", "expand", "load_spec", "parse_spec"]
