"""Driver for the eICU_MEDS 0.1.0 ETL, run by the ETL's own venv (never imported by MEHR-Bench).

`MEDS_extract-eICU` adds the hydra override `~parallelize` for a serial run, and the hydra its venv
installs refuses it ("Could not delete from config. The value of 'parallelize' is {...} and not
None"); with N_WORKERS=2 instead, the extract_code_metadata stage waits forever for a file the other
worker already wrote. This driver runs the same two steps as that console script (pre-MEDS, then
the MEDS-Transforms pipeline with the package's ETL.yaml and event config) with one joblib worker
and no `~parallelize`. Nothing else differs.

Usage (argv): python eicu_driver.py RAW_DIR WORK_DIR OUTPUT_DIR
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    """Run pre-MEDS then the MEDS pipeline.

    Args:
        argv: raw input folder, scratch folder, MEDS output folder.

    Returns:
        The pipeline's exit status.
    """
    # The ETL's own packages: present in its venv only, which is where this file runs.
    from eICU_MEDS import ETL_CFG, EVENT_CFG, dataset_info
    from eICU_MEDS import __version__ as pkg_version
    from eICU_MEDS.pre_MEDS import main as pre_meds

    raw, work, out = (Path(a).resolve() for a in argv[:3])
    pre_dir = work / "pre_MEDS"
    pre_meds(input_dir=raw, output_dir=pre_dir)
    env = {**os.environ,
           "N_WORKERS": "1",
           "DATASET_NAME": dataset_info.dataset_name,
           "DATASET_VERSION": f"{dataset_info.raw_dataset_version}:{pkg_version}",
           "EVENT_CONVERSION_CONFIG_FP": str(Path(str(EVENT_CFG)).resolve()),
           "PRE_MEDS_DIR": str(pre_dir),
           "MEDS_OUTPUT_DIR": str(out)}
    cmd = ["MEDS_transform-pipeline", str(Path(str(ETL_CFG)).resolve()),
           "--overrides", f"output_dir={out}", "do_overwrite=False"]
    return subprocess.run(cmd, env=env).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
