"""Registry entry `mehrt-9m`: MEHRT at the '9M' size whatever the budget (scaling plot)."""

from encoders.mehrt.register_mehrt import sized_spec

SPEC = sized_spec("9M")
