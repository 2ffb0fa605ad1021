"""Registry entry `mehrt-small`: MEHRT at the 'small' size whatever the budget (scaling plot)."""

from encoders.mehrt.register_mehrt import sized_spec

SPEC = sized_spec("small")
