"""Registry entry `mehrt-tiny`: MEHRT at the 'tiny' size whatever the budget (scaling plot)."""

from encoders.mehrt.register_mehrt import sized_spec

SPEC = sized_spec("tiny")
