"""Data preparation: the synthetic multimodal cohort generator (data_prep.synthetic), MEDS
validation and converters into the MEHR-Bench cohort format.

Submodules are imported lazily by their users; importing this package is cheap.
"""
