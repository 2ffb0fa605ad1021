"""Tiny raw OMOP CDM 5.4 and eICU-CRD 2.0 folders in their published layouts (no real data here).

Each writer returns the folder and the facts a test counts by hand. Column names follow the OMOP
CDM 5.4 DDL and the eICU-CRD 2.0 release (one `<table>.csv.gz` per table, camelCase file names);
only the columns the ETLs read are filled, as real extracts may also carry more.

OMOP persons (person_id: what happens), times relative to 2020-01-01:
    1001  F White, lung cancer (ICD10CM C34.90) 2020-01-10, carboplatin 2020-02-01, dies 2020-06-30
    1002  M Black, lung cancer 2020-01-05, carboplatin 2020-01-20, creatinine 2021-06-01, alive
    1003  F White, breast cancer 2019-03-01, carboplatin 2020-05-01 (cancer > 1 y before: excluded)
    1004  M White, T2D (SNOMED only), metformin, no cancer treatment
    1005  F Asian (Race/2), ICU stay, dies in the ICU 2021-03-04
    1006  M White, lung cancer + metastasis (C78.00), carboplatin 2020-03-01, dies 2022-01-15 (> 1 y)
So oncology/mortality_1y (index: first carboplatin; cancer in the year before) has 3 samples
(1001 positive, 1002 and 1006 negative).

eICU health-system stays (patienthealthsystemstayid: what happens); 1 unit stay each:
    2001  Female Caucasian, 3-day ICU stay, alive
    2002  Male African American, dies in the ICU on day 2 (unit and hospital "Expired")
    2003  Female Caucasian, dies in the ICU at hour 10 (before the 24 h prediction time: excluded)
    2004  Male Hispanic, 30-hour ICU stay, discharged alive, dies later in hospital
    2005  Male Caucasian, 12-hour ICU stay (discharged before 24 h: excluded)
So icu/mortality_24h has 3 samples (2001 negative, 2002 positive, 2004 negative: the hospital death
comes after ICU discharge).
"""

from __future__ import annotations

import csv
import gzip
from pathlib import Path

# ---------------------------------------------------------------------------- OMOP
# concept_id, concept_name, domain_id, vocabulary_id, concept_class_id, standard, concept_code
OMOP_CONCEPTS = [
    (8507, "MALE", "Gender", "Gender", "Gender", "S", "M"),
    (8532, "FEMALE", "Gender", "Gender", "Gender", "S", "F"),
    (8527, "White", "Race", "Race", "Race", "S", "5"),
    (8516, "Black or African American", "Race", "Race", "Race", "S", "3"),
    (8515, "Asian", "Race", "Race", "Race", "S", "2"),
    (38003564, "Not Hispanic or Latino", "Ethnicity", "Ethnicity", "Ethnicity", "S", "Not Hispanic"),
    (9201, "Inpatient Visit", "Visit", "Visit", "Visit", "S", "IP"),
    (9203, "Emergency Room Visit", "Visit", "Visit", "Visit", "S", "ER"),
    (32037, "Intensive Care", "Visit", "Visit", "Visit", "S", "OMOP4822460"),
    (8536, "Home Visit", "Visit", "CMS Place of Service", "Visit", "S", "12"),
    (35225673, "Malignant neoplasm of unspecified part of unspecified bronchus or lung", "Condition",
     "ICD10CM", "5-char billing code", "", "C34.90"),
    (45591459, "Malignant neoplasm of unspecified site of unspecified female breast", "Condition",
     "ICD10CM", "5-char billing code", "", "C50.919"),
    (35225710, "Secondary malignant neoplasm of unspecified lung", "Condition", "ICD10CM",
     "5-char billing code", "", "C78.00"),
    (258369, "Primary malignant neoplasm of lung", "Condition", "SNOMED", "Clinical Finding", "S", "93880001"),
    (201826, "Type 2 diabetes mellitus", "Condition", "SNOMED", "Clinical Finding", "S", "44054006"),
    (1344905, "carboplatin", "Drug", "RxNorm", "Ingredient", "S", "40048"),
    (1503297, "metformin", "Drug", "RxNorm", "Ingredient", "S", "6809"),
    (3016723, "Creatinine [Mass/volume] in Serum or Plasma", "Measurement", "LOINC", "Lab Test", "S", "2160-0"),
    (3020891, "Body temperature", "Measurement", "LOINC", "Clinical Observation", "S", "8310-5"),
    (3013650, "Neutrophils [#/volume] in Blood", "Measurement", "LOINC", "Lab Test", "S", "751-8"),
    (8840, "milligram per deciliter", "Unit", "UCUM", "Unit", "S", "mg/dL"),
    (586323, "degree Celsius", "Unit", "UCUM", "Unit", "S", "Cel"),
    (8848, "thousand per microliter", "Unit", "UCUM", "Unit", "S", "10*3/uL"),
    (4144289, "Primary malignant neoplasm", "Condition", "SNOMED", "Clinical Finding", "S", "372087000"),
    (4046263, "Colonoscopy", "Procedure", "SNOMED", "Procedure", "S", "73761001"),
]

# person_id, gender, race, year, month, day
OMOP_PERSONS = [(1001, 8532, 8527, 1955, 4, 2), (1002, 8507, 8516, 1960, 7, 9), (1003, 8532, 8527, 1970, 1, 1),
                (1004, 8507, 8527, 1950, 3, 3), (1005, 8532, 8515, 1948, 11, 30), (1006, 8507, 8527, 1958, 5, 5)]
# person_id, start, end, visit_concept_id, discharged_to_concept_id
OMOP_VISITS = [(1001, "2020-01-10", "2020-01-12", 9201, 8536), (1002, "2020-01-05", "2020-01-06", 9203, 0),
               (1003, "2019-03-01", "2019-03-04", 9201, 8536), (1004, "2020-02-02", "2020-02-02", 9203, 0),
               (1005, "2021-03-01 08:00:00", "2021-03-04 12:00:00", 9201, 0),
               (1006, "2020-02-15", "2020-02-20", 9201, 8536)]
# person_id, date, condition_concept_id (SNOMED), condition_source_concept_id (ICD10CM or 0)
OMOP_CONDITIONS = [(1001, "2020-01-10", 258369, 35225673), (1002, "2020-01-05", 258369, 35225673),
                   (1003, "2019-03-01", 0, 45591459), (1004, "2020-02-02", 201826, 0),
                   (1006, "2020-02-15", 258369, 35225673), (1006, "2020-02-16", 0, 35225710)]
OMOP_DRUGS = [(1001, "2020-02-01", 1344905), (1002, "2020-01-20", 1344905), (1003, "2020-05-01", 1344905),
              (1004, "2020-02-02", 1503297), (1006, "2020-03-01", 1344905)]
# person_id, datetime, concept, value, unit concept, unit source value
OMOP_MEASUREMENTS = [(1001, "2020-01-10 09:30:00", 3016723, 1.1, 8840, "mg/dL"),
                     (1002, "2020-01-05 10:00:00", 3020891, 38.6, 586323, ""),
                     (1002, "2020-01-05 10:00:00", 3013650, 0.4, 8848, "10*3/uL"),
                     (1005, "2021-03-01 09:00:00", 3016723, 2.4, 8840, ""),
                     (1002, "2021-06-01 10:00:00", 3016723, 0.9, 8840, "mg/dL")]
OMOP_DEATHS = [(1001, "2020-06-30"), (1005, "2021-03-04"), (1006, "2022-01-15")]
OMOP_OBSERVATION_END = {1002: "2022-03-01", 1003: "2022-03-01", 1004: "2022-03-01"}
OMOP_ICU = [(1005, "2021-03-01 10:00:00", "2021-03-04 12:00:00")]
OMOP_EXPECTED = {"n_subjects": 6, "mortality_1y": {1001: True, 1002: False, 1006: False}}
OMOP_TABLES = ("person", "observation_period", "visit_occurrence", "visit_detail", "condition_occurrence",
               "drug_exposure", "procedure_occurrence", "measurement", "observation", "death", "concept",
               "concept_relationship", "concept_ancestor", "cdm_source")


def _write_csv(path: Path, header: list[str], rows: list, gz: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    opener = gzip.open if gz else open
    with opener(path, "wt", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)


def write_omop(root: Path, *, gz: bool = False, omit: tuple[str, ...] = ()) -> Path:
    """Write the raw OMOP CDM 5.4 fixture (one <table>.csv[.gz] per table) and return its folder.

    Args:
        root: the folder to create.
        gz: write .csv.gz (as many OMOP exports ship) instead of .csv.
        omit: tables to leave out (to test the refusal of a bad --raw).
    """
    ext = ".csv.gz" if gz else ".csv"
    tables: dict[str, tuple[list[str], list]] = {
        "concept": (["concept_id", "concept_name", "domain_id", "vocabulary_id", "concept_class_id",
                     "standard_concept", "concept_code", "valid_start_date", "valid_end_date", "invalid_reason"],
                    [(*c, "1970-01-01", "2099-12-31", "") for c in OMOP_CONCEPTS]),
        "concept_relationship": (["concept_id_1", "concept_id_2", "relationship_id", "valid_start_date",
                                  "valid_end_date", "invalid_reason"],
                                 [(35225673, 258369, "Maps to", "1970-01-01", "2099-12-31", "")]),
        "concept_ancestor": (["ancestor_concept_id", "descendant_concept_id", "min_levels_of_separation",
                              "max_levels_of_separation"], [(4144289, 258369, 1, 1)]),
        "cdm_source": (["cdm_source_name", "cdm_source_abbreviation", "cdm_holder", "source_release_date",
                        "cdm_release_date", "cdm_version", "vocabulary_version"],
                       [("MEHR-Bench OMOP fixture", "FIX", "MEHR-Bench", "2024-01-01", "2024-02-01", "5.4",
                         "v5.0 01-JAN-24")]),
        "person": (["person_id", "gender_concept_id", "year_of_birth", "month_of_birth", "day_of_birth",
                    "birth_datetime", "race_concept_id", "ethnicity_concept_id", "gender_source_value"],
                   [(p, g, y, m, d, "", r, 38003564, "") for p, g, r, y, m, d in OMOP_PERSONS]),
        "observation_period": (["observation_period_id", "person_id", "observation_period_start_date",
                                "observation_period_end_date", "period_type_concept_id"],
                               [(i, p, "2018-01-01", OMOP_OBSERVATION_END.get(p, "2022-03-01"), 32817)
                                for i, (p, *_) in enumerate(OMOP_PERSONS, 1)]),
        "visit_occurrence": (["visit_occurrence_id", "person_id", "visit_concept_id", "visit_start_date",
                              "visit_start_datetime", "visit_end_date", "visit_end_datetime",
                              "visit_type_concept_id", "visit_source_concept_id", "discharged_to_concept_id"],
                             [(5000 + i, p, c, s[:10], s, e[:10], e, 32817, 0, d)
                              for i, (p, s, e, c, d) in enumerate(OMOP_VISITS)]),
        "visit_detail": (["visit_detail_id", "person_id", "visit_detail_concept_id", "visit_detail_start_date",
                          "visit_detail_start_datetime", "visit_detail_end_date", "visit_detail_end_datetime",
                          "visit_detail_type_concept_id", "visit_detail_source_concept_id", "visit_occurrence_id"],
                         [(7000 + i, p, 32037, s[:10], s, e[:10], e, 32817, 0, 5004)
                          for i, (p, s, e) in enumerate(OMOP_ICU)]),
        "condition_occurrence": (["condition_occurrence_id", "person_id", "condition_concept_id",
                                  "condition_start_date", "condition_start_datetime", "condition_type_concept_id",
                                  "condition_source_concept_id", "condition_source_value"],
                                 [(6000 + i, p, c, d, "", 32817, s, "") for i, (p, d, c, s) in
                                  enumerate(OMOP_CONDITIONS)]),
        "drug_exposure": (["drug_exposure_id", "person_id", "drug_concept_id", "drug_exposure_start_date",
                           "drug_exposure_start_datetime", "drug_exposure_end_date", "drug_type_concept_id",
                           "drug_source_concept_id", "quantity"],
                          [(8000 + i, p, c, d, "", d, 32817, 0, 1) for i, (p, d, c) in enumerate(OMOP_DRUGS)]),
        "procedure_occurrence": (["procedure_occurrence_id", "person_id", "procedure_concept_id", "procedure_date",
                                  "procedure_datetime", "procedure_type_concept_id", "procedure_source_concept_id"],
                                 [(9000, 1004, 4046263, "2020-02-02", "", 32817, 0)]),
        "measurement": (["measurement_id", "person_id", "measurement_concept_id", "measurement_date",
                         "measurement_datetime", "measurement_type_concept_id", "value_as_number",
                         "value_as_concept_id", "unit_concept_id", "measurement_source_concept_id",
                         "measurement_source_value", "unit_source_value", "value_source_value"],
                        [(9500 + i, p, c, t[:10], t, 32817, v, 0, u, 0, "", us, str(v))
                         for i, (p, t, c, v, u, us) in enumerate(OMOP_MEASUREMENTS)]),
        "observation": (["observation_id", "person_id", "observation_concept_id", "observation_date",
                         "observation_datetime", "observation_type_concept_id", "value_as_number",
                         "value_as_string", "value_as_concept_id", "observation_source_concept_id",
                         "observation_source_value", "unit_concept_id"], []),
        "death": (["person_id", "death_date", "death_datetime", "death_type_concept_id", "cause_concept_id"],
                  [(p, d, "", 32817, 0) for p, d in OMOP_DEATHS]),
    }
    for name, (header, rows) in tables.items():
        if name not in omit:
            _write_csv(root / f"{name}{ext}", header, rows, gz)
    return root


# ---------------------------------------------------------------------------- eICU
# healthsystem stay, unit stay, gender, age, ethnicity, unit discharge offset (min), unit status,
# hospital discharge offset (min), hospital status
EICU_STAYS = [(2001, 3001, "Female", "67", "Caucasian", 4320, "Alive", 5760, "Alive"),
              (2002, 3002, "Male", "> 89", "African American", 2880, "Expired", 2880, "Expired"),
              (2003, 3003, "Female", "54", "Caucasian", 600, "Expired", 600, "Expired"),
              (2004, 3004, "Male", "71", "Hispanic", 1800, "Alive", 7200, "Expired"),
              (2005, 3005, "Male", "45", "Caucasian", 720, "Alive", 1440, "Alive")]
EICU_EXPECTED = {"n_subjects": 5, "mortality_24h": {2001: False, 2002: True, 2004: False}}
EICU_TABLES = ("patient", "hospital", "admissionDx", "allergy", "carePlanGeneral", "carePlanEOL", "carePlanGoal",
               "carePlanInfectiousDisease", "diagnosis", "infusionDrug", "lab", "medication", "treatment",
               "vitalAperiodic", "vitalPeriodic")


def _eicu_tables() -> dict[str, tuple[list[str], list]]:
    """Header and rows of each eICU table (every unit stay gets one row where a table is per-event)."""
    stays = [s[1] for s in EICU_STAYS]
    patient = (["patientunitstayid", "patienthealthsystemstayid", "gender", "age", "ethnicity", "hospitalid",
                "wardid", "apacheadmissiondx", "admissionheight", "hospitaladmittime24", "hospitaladmitoffset",
                "hospitaladmitsource", "hospitaldischargeyear", "hospitaldischargetime24", "hospitaldischargeoffset",
                "hospitaldischargelocation", "hospitaldischargestatus", "unittype", "unitadmittime24",
                "unitadmitsource", "unitvisitnumber", "unitstaytype", "admissionweight", "dischargeweight",
                "unitdischargetime24", "unitdischargeoffset", "unitdischargelocation", "unitdischargestatus",
                "uniquepid"],
               [(u, h, g, a, e, 73, 90, "Sepsis, pulmonary", 170.2, "08:00:00", -120, "Emergency Department", 2015,
                 "12:00:00", hoff, "Home" if hs == "Alive" else "Death", hs, "Med-Surg ICU", "10:00:00",
                 "Emergency Department", 1, "admit", 80.5, 79.0, "12:00:00", uoff,
                 "Floor" if us == "Alive" else "Death", us, f"002-{h}")
                for h, u, g, a, e, uoff, us, hoff, hs in EICU_STAYS])
    return {
        "patient": patient,
        "hospital": (["hospitalid", "numbedscategory", "teachingstatus", "region"], [(73, "100 - 249", "f", "Midwest")]),
        "admissionDx": (["admissiondxid", "patientunitstayid", "admitdxenteredoffset", "admitdxpath", "admitdxname",
                         "admitdxtext"], [(100 + i, u, 5, "admission diagnosis|All Diagnosis|Sepsis", "Sepsis",
                                           "Sepsis, pulmonary") for i, u in enumerate(stays)]),
        "allergy": (["allergyid", "patientunitstayid", "allergyoffset", "allergyenteredoffset", "allergynotetype",
                     "usertype", "rxincluded", "writtenineicu", "drugname", "allergytype", "allergyname",
                     "drughiclseqno"], [(200, stays[0], 10, 10, "Admission", "Nurse", "f", "t", "", "Drug",
                                         "penicillin", "")]),
        "carePlanGeneral": (["cplgeneralid", "patientunitstayid", "activeupondischarge", "cplitemoffset", "cplgroup",
                             "cplitemvalue"], [(300, stays[0], "t", 30, "Code Status", "Full Therapy")]),
        "carePlanEOL": (["cpleolid", "patientunitstayid", "cpleolsaveoffset", "cpleoldiscussionoffset",
                         "activeupondischarge"], [(400, stays[1], 60, 60, "f")]),
        "carePlanGoal": (["cplgoalid", "patientunitstayid", "cplgoaloffset", "cplgoalcategory", "cplgoalvalue",
                          "cplgoalstatus", "activeupondischarge"], [(500, stays[0], 40, "Respiratory/Pulmonary",
                                                                      "Maintain airway", "Active", "t")]),
        "carePlanInfectiousDisease": (["cplinfectid", "patientunitstayid", "activeupondischarge",
                                       "cplinfectdiseaseoffset", "infectdiseasesite", "infectdiseaseassessment",
                                       "responsetotherapy", "treatment"],
                                      [(600, stays[0], "t", 50, "Pulmonary", "Definite", "Improving", "Empiric")]),
        "diagnosis": (["diagnosisid", "patientunitstayid", "activeupondischarge", "diagnosisoffset", "diagnosisstring",
                       "icd9code", "diagnosispriority"],
                      [(700, stays[0], "t", 20, "oncology|chest tumors|primary lung cancer", "162.9, C34.90", "Major"),
                       (701, stays[1], "t", 20, "cardiovascular|shock / hypotension|sepsis", "038.9, A41.9", "Major"),
                       (702, stays[3], "t", 20, "endocrine|glucose metabolism|diabetes mellitus|Type II",
                        "250.00, E11.9", "Other")]),
        "infusionDrug": (["infusiondrugid", "patientunitstayid", "infusionoffset", "drugname", "drugrate",
                          "infusionrate", "drugamount", "volumeoffluid", "patientweight"],
                         # infusionrate / patientweight are free text in the release ("OFF", ""): eICU_MEDS
                         # reads them with a regex and fails on a column that parses as all-numeric
                         [(800, stays[1], 90, "Norepinephrine (mcg/min)", "5", "5", "", "", "80.5"),
                          (801, stays[1], 95, "Norepinephrine (mcg/min)", "OFF", "OFF", "", "", "unknown")]),
        "lab": (["labid", "patientunitstayid", "labresultoffset", "labtypeid", "labname", "labresult", "labresulttext",
                 "labmeasurenamesystem", "labmeasurenameinterface", "labresultrevisedoffset"],
                [(900 + i, u, 60, 1, "creatinine", 1.2 + i, str(1.2 + i), "mg/dL", "mg/dL", 65)
                 for i, u in enumerate(stays)]
                + [(950, stays[1], 70, 1, "lactate", 4.1, "4.1", "mmol/L", "mmol/L", 75)]),
        "medication": (["medicationid", "patientunitstayid", "drugorderoffset", "drugstartoffset", "drugivadmixture",
                        "drugordercancelled", "drugname", "drughiclseqno", "dosage", "routeadmin", "frequency",
                        "loadingdose", "prn", "drugstopoffset", "gtc"],
                       [(1000, stays[3], 30, 35, "No", "No", "METFORMIN 500 MG PO TABS", "10582", "500 mg", "PO",
                         "BID", "", "No", 1500, 0)]),
        "treatment": (["treatmentid", "patientunitstayid", "treatmentoffset", "treatmentstring", "activeupondischarge"],
                      [(1100, stays[1], 100, "cardiovascular|shock|vasopressors|norepinephrine > 0.1 micrograms/kg/min",
                        "t")]),
        "vitalAperiodic": (["vitalaperiodicid", "patientunitstayid", "observationoffset", "noninvasivesystolic",
                            "noninvasivediastolic", "noninvasivemean", "paop", "cardiacoutput", "cardiacinput", "svr",
                            "svri", "pvr", "pvri"], [(1200, stays[0], 15, 120, 70, 87, "", "", "", "", "", "", "")]),
        "vitalPeriodic": (["vitalperiodicid", "patientunitstayid", "observationoffset", "temperature", "sao2",
                           "heartrate", "respiration", "cvp", "etco2", "systemicsystolic", "systemicdiastolic",
                           "systemicmean", "pasystolic", "padiastolic", "pamean", "st1", "st2", "st3", "icp"],
                          [(1300 + i, u, 5, 37.0 + i * 0.5, 97, 88, 18, "", "", "", "", "", "", "", "", "", "", "",
                            "") for i, u in enumerate(stays)]),
    }


def write_eicu(root: Path, *, omit: tuple[str, ...] = ()) -> Path:
    """Write the raw eICU-CRD 2.0 fixture (<table>.csv.gz, release spellings) and return its folder.

    Args:
        root: the folder to create.
        omit: tables to leave out (to test the refusal of a bad --raw).
    """
    for name, (header, rows) in _eicu_tables().items():
        if name not in omit:
            _write_csv(root / f"{name}.csv.gz", header, rows, gz=True)
    return root
