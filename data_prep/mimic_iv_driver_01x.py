"""Driver for the MIMIC_IV_MEDS 0.1.x ETL, run by the ETL's own venv (never imported by MEHR-Bench).

0.1.x's console script (`MEDS_extract-MIMIC_IV`) fixes its event config to the packaged file, and its
shard stage refuses a source table with no rows ("exclude it from the event conversion
configuration"). The MIMIC-IV demo ships `icu/chartevents.csv.gz` as a header-only placeholder, so
this driver runs the same two steps as that console script (pre-MEDS wrangling, then the
MEDS-Transforms pipeline with the package's ETL.yaml) but with the event config minus the tables
MEHR-Bench found empty. Nothing else differs from the console script.

Usage (argv): python mimic_iv_driver_01x.py RAW_DIR WORK_DIR OUTPUT_DIR [EMPTY_TABLE ...]
where EMPTY_TABLE is a table prefix such as `icu/chartevents`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    """Run pre-MEDS then the MEDS pipeline.

    Args:
        argv: raw input folder, scratch folder, MEDS output folder, then the empty tables to skip.

    Returns:
        The pipeline's exit status.
    """
    # The ETL's own packages: present in its venv only, which is where this file runs.
    from MIMIC_IV_MEDS import ETL_CFG, EVENT_CFG, dataset_info
    from MIMIC_IV_MEDS import __version__ as pkg_version
    from MIMIC_IV_MEDS.pre_MEDS import main as pre_meds
    from omegaconf import OmegaConf

    raw, work, out = (Path(a).resolve() for a in argv[:3])
    empty = set(argv[3:])
    pre_dir = work / "pre_MEDS"
    pre_meds(input_dir=raw, output_dir=pre_dir)

    events = OmegaConf.load(EVENT_CFG)
    for table in empty:
        events.pop(table, None)
    event_fp = work / "event_configs.yaml"
    OmegaConf.save(events, event_fp)

    env = {**os.environ,
           "DATASET_NAME": dataset_info.dataset_name,
           "DATASET_VERSION": f"{dataset_info.raw_dataset_version}:{pkg_version}",
           "EVENT_CONVERSION_CONFIG_FP": str(event_fp),
           "PRE_MEDS_DIR": str(pre_dir)}
    cmd = ["MEDS_transform-pipeline", str(Path(str(ETL_CFG)).resolve()),
           "--overrides", f"output_dir={out}", "~parallelize"]
    return subprocess.run(cmd, env=env).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
