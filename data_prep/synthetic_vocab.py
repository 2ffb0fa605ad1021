"""Code vocabularies for the synthetic cohort: every code the generator can emit, with descriptions.

The codes follow MEDS style ``VOCAB/CODE`` (ICD10CM, ICD10PCS, RXNORM, LOINC, plus a few local
vocabularies: IMAGING, CXR_FINDING, ONCOLOGY, NOTE, VISIT, SYNTH). Descriptions of real vocabularies
are short paraphrases; long-tail codes marked "(synthetic)" only borrow a real category. None of this
is a medical claim: the cohort is a test oracle for the benchmark machinery.
"""

from __future__ import annotations

# --- demographics (static rows, time = null) -------------------------------------------------------
SEX_CODES = ["GENDER/F", "GENDER/M"]
RACE_CODES = ["RACE/WHITE", "RACE/BLACK", "RACE/ASIAN", "RACE/OTHER"]
RACE_WEIGHTS = [0.62, 0.16, 0.08, 0.14]
ETHNICITY_CODES = ["ETHNICITY/HISPANIC", "ETHNICITY/NOT_HISPANIC"]

# --- labs and vitals: name -> (code, description) --------------------------------------------------
LABS = {
    "creatinine": ("LOINC/2160-0", "Creatinine [Mass/volume] in Serum or Plasma (mg/dL)"),
    "anc": ("LOINC/751-8", "Neutrophils [#/volume] in Blood (cells/uL)"),
    "temperature": ("LOINC/8310-5", "Body temperature (Cel)"),
    "hemoglobin": ("LOINC/718-7", "Hemoglobin [Mass/volume] in Blood (g/dL)"),
    "platelets": ("LOINC/777-3", "Platelets [#/volume] in Blood (10*3/uL)"),
    "hba1c": ("LOINC/4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood (%)"),
    "glucose": ("LOINC/2345-7", "Glucose [Mass/volume] in Serum or Plasma (mg/dL)"),
    "bmi": ("LOINC/39156-5", "Body mass index (kg/m2)"),
    "lactate": ("LOINC/2524-7", "Lactate [Moles/volume] in Serum or Plasma (mmol/L)"),
    "wbc": ("LOINC/6690-2", "Leukocytes [#/volume] in Blood (10*3/uL)"),
    "heart_rate": ("LOINC/8867-4", "Heart rate (/min)"),
    "map": ("LOINC/8478-0", "Mean blood pressure (mm[Hg])"),
    "resp_rate": ("LOINC/9279-1", "Respiratory rate (/min)"),
    "spo2": ("LOINC/59408-5", "Oxygen saturation in Arterial blood by Pulse oximetry (%)"),
    "gcs": ("LOINC/9269-2", "Glasgow coma score total"),
}

# --- encounters and events of the local vocabularies ----------------------------------------------
EVENT_CODES = {
    "MEDS_BIRTH": "Birth",
    "MEDS_DEATH": "Death",
    "VISIT/PRIMARY_CARE": "Primary-care outpatient visit",
    "VISIT/ONCOLOGY": "Oncology clinic visit",
    "HOSPITAL_ADMISSION": "Hospital admission",
    "HOSPITAL_DISCHARGE": "Hospital discharge",
    "ICU_ADMISSION": "ICU admission",
    "ICU_DISCHARGE": "ICU discharge",
    "IMAGING/CXR": "Chest radiograph study",
    "IMAGING/CTPA": "CT pulmonary angiography",
    "IMAGING/CARDIAC_CT": "Cardiac CT (coronary calcium scoring)",
    "IMAGING/CT_STAGING": "CT chest/abdomen/pelvis for cancer staging",
    "PATHOLOGY/BIOPSY": "Tissue biopsy with whole-slide image",
    "ONCOLOGY/PROGRESSION": "Cancer progression documented",
    "NOTE/RADIOLOGY": "Radiology report (text in text_value)",
    "SYNTH/LEAK_OUTCOME": "Synthetic leakage-probe outcome (coin flip, not a clinical event)",
    "SYNTH/LEAK_PROBE": "Synthetic leakage probe recorded 1 h after treatment start",
}

# --- oncology -------------------------------------------------------------------------------------
# site name, ICD10CM code, description, allowed sex ("F", "M" or "FM"), sampling weight,
# log-hazard offsets for death, progression and metastasis (relative aggressiveness of the site)
CANCER_SITES = [
    ("lung", "ICD10CM/C34.90", "Malignant neoplasm of unspecified part of bronchus or lung", "FM", 0.18,
     0.45, 0.35, 0.30),
    ("breast", "ICD10CM/C50.911", "Malignant neoplasm of unspecified site of right female breast", "F",
     0.20, -0.60, -0.35, -0.10),
    ("colon", "ICD10CM/C18.9", "Malignant neoplasm of colon, unspecified", "FM", 0.11, 0.0, 0.0, 0.10),
    ("prostate", "ICD10CM/C61", "Malignant neoplasm of prostate", "M", 0.15, -0.80, -0.40, -0.20),
    ("pancreas", "ICD10CM/C25.9", "Malignant neoplasm of pancreas, unspecified", "FM", 0.06, 0.85, 0.60,
     0.40),
    ("ovary", "ICD10CM/C56.9", "Malignant neoplasm of unspecified ovary", "F", 0.05, 0.25, 0.30, 0.20),
    ("rectum", "ICD10CM/C20", "Malignant neoplasm of rectum", "FM", 0.06, 0.0, 0.0, 0.10),
    ("kidney", "ICD10CM/C64.9", "Malignant neoplasm of unspecified kidney, except renal pelvis", "FM",
     0.06, -0.20, -0.10, 0.0),
    ("bladder", "ICD10CM/C67.9", "Malignant neoplasm of bladder, unspecified", "FM", 0.06, 0.10, 0.10,
     0.0),
    ("melanoma", "ICD10CM/C43.9", "Malignant melanoma of skin, unspecified", "FM", 0.07, -0.10, 0.10,
     0.20),
]

CHEMO_DRUGS = {
    "RXNORM/2555": "cisplatin",
    "RXNORM/40048": "carboplatin",
    "RXNORM/56946": "paclitaxel",
    "RXNORM/3639": "doxorubicin",
    "RXNORM/3002": "cyclophosphamide",
    "RXNORM/4492": "fluorouracil",
    "RXNORM/32592": "oxaliplatin",
    "RXNORM/1547545": "pembrolizumab",
    "RXNORM/12574": "gemcitabine",
    "RXNORM/72962": "docetaxel",
    "RXNORM/68446": "pemetrexed",
    "RXNORM/51499": "irinotecan",
    "RXNORM/1597876": "nivolumab",
    "RXNORM/4179": "etoposide",
}

# regimen name, drug codes, cisplatin (nephrotoxic) flag, myelotoxicity 0-2, anaemia rate (Hb g/dL
# lost per cycle, mean), platelet loss (10^3/uL per cycle, mean)
REGIMENS = [
    ("cisplatin_pemetrexed", ["RXNORM/2555", "RXNORM/68446"], 1, 1, 0.55, 18.0),
    ("carboplatin_paclitaxel", ["RXNORM/40048", "RXNORM/56946"], 0, 2, 0.60, 26.0),
    ("pembrolizumab", ["RXNORM/1547545"], 0, 0, 0.15, 4.0),
    ("doxorubicin_cyclophosphamide", ["RXNORM/3639", "RXNORM/3002"], 0, 2, 0.55, 18.0),
    ("paclitaxel", ["RXNORM/56946"], 0, 1, 0.35, 10.0),
    ("folfox", ["RXNORM/32592", "RXNORM/4492"], 0, 1, 0.40, 22.0),
    ("folfirinox", ["RXNORM/32592", "RXNORM/51499", "RXNORM/4492"], 0, 2, 0.55, 25.0),
    ("gemcitabine_cisplatin", ["RXNORM/12574", "RXNORM/2555"], 1, 1, 0.65, 30.0),
    ("docetaxel", ["RXNORM/72962"], 0, 2, 0.40, 10.0),
    ("nivolumab", ["RXNORM/1597876"], 0, 0, 0.15, 4.0),
    ("etoposide_cisplatin", ["RXNORM/4179", "RXNORM/2555"], 1, 2, 0.60, 25.0),
]
REGIMEN_INDEX = {name: i for i, (name, *_rest) in enumerate(REGIMENS)}

# first-line regimen probabilities per site (same order as CANCER_SITES)
SITE_REGIMENS = {
    "lung": {"cisplatin_pemetrexed": 0.35, "carboplatin_paclitaxel": 0.30, "pembrolizumab": 0.20,
             "etoposide_cisplatin": 0.15},
    "breast": {"doxorubicin_cyclophosphamide": 0.6, "paclitaxel": 0.4},
    "colon": {"folfox": 1.0},
    "prostate": {"docetaxel": 1.0},
    "pancreas": {"folfirinox": 0.7, "folfox": 0.3},
    "ovary": {"carboplatin_paclitaxel": 0.85, "paclitaxel": 0.15},
    "rectum": {"folfox": 1.0},
    "kidney": {"pembrolizumab": 0.5, "nivolumab": 0.5},
    "bladder": {"gemcitabine_cisplatin": 1.0},
    "melanoma": {"pembrolizumab": 0.55, "nivolumab": 0.45},
}
SECOND_LINE_DRUGS = ["RXNORM/1547545", "RXNORM/72962", "RXNORM/12574"]

METASTASIS_CODES = {
    "ICD10CM/C77.9": "Secondary and unspecified malignant neoplasm of lymph node, unspecified",
    "ICD10CM/C78.00": "Secondary malignant neoplasm of unspecified lung",
    "ICD10CM/C78.7": "Secondary malignant neoplasm of liver and intrahepatic bile duct",
    "ICD10CM/C79.31": "Secondary malignant neoplasm of brain",
    "ICD10CM/C79.51": "Secondary malignant neoplasm of bone",
}

PROCEDURES = {
    "ICD10PCS/30233N1": "Transfusion of nonautologous red blood cells into peripheral vein",
    "ICD10PCS/30233R1": "Transfusion of nonautologous platelets into peripheral vein",
    "ICD10PCS/0BH17EZ": "Insertion of endotracheal airway into trachea",
    "ICD10PCS/5A1955Z": "Respiratory ventilation, greater than 96 consecutive hours",
    "ICD10PCS/02HV33Z": "Insertion of infusion device into superior vena cava",
    "ICD10PCS/0DB68ZX": "Excision of stomach, endoscopic, diagnostic",
    "ICD10PCS/0BB48ZX": "Excision of lung, endoscopic, diagnostic (biopsy)",
}

# --- acute diagnoses of the modelled processes ----------------------------------------------------
ACUTE_DX = {
    "ICD10CM/I26.99": "Other pulmonary embolism without acute cor pulmonale",
    "ICD10CM/I26.09": "Other pulmonary embolism with acute cor pulmonale",
    "ICD10CM/I21.4": "Non-ST elevation myocardial infarction",
    "ICD10CM/I21.9": "Acute myocardial infarction, unspecified",
    "ICD10CM/I22.9": "Subsequent ST elevation myocardial infarction of unspecified site",
    "ICD10CM/I63.9": "Cerebral infarction, unspecified",
    "ICD10CM/A41.9": "Sepsis, unspecified organism",
    "ICD10CM/J96.00": "Acute respiratory failure, unspecified whether with hypoxia or hypercapnia",
    "ICD10CM/N17.9": "Acute kidney failure, unspecified",
    "ICD10CM/J18.9": "Pneumonia, unspecified organism",
    "ICD10CM/D70.1": "Agranulocytosis secondary to cancer chemotherapy",
    "ICD10CM/R50.81": "Fever presenting with conditions classified elsewhere",
    "ICD10CM/E11.9": "Type 2 diabetes mellitus without complications",
    "ICD10CM/E11.65": "Type 2 diabetes mellitus with hyperglycemia",
}
# generator 2: acute heart failure (MACE component), and the sub-codes site b prefers (same families)
ACUTE_DX.update({
    "ICD10CM/I50.21": "Acute systolic (congestive) heart failure",
    "ICD10CM/I50.31": "Acute diastolic (congestive) heart failure",
    "ICD10CM/I50.23": "Acute on chronic systolic (congestive) heart failure",
    "ICD10CM/I50.33": "Acute on chronic diastolic (congestive) heart failure",
    "ICD10CM/I21.A1": "Myocardial infarction type 2",
    "ICD10CM/I21.01": "ST elevation myocardial infarction involving left main coronary artery",
    "ICD10CM/I22.0": "Subsequent ST elevation myocardial infarction of anterior wall",
    "ICD10CM/I63.50": "Cerebral infarction due to unspecified occlusion or stenosis of unspecified cerebral artery",
    "ICD10CM/I26.92": "Saddle embolus of pulmonary artery without acute cor pulmonale",
    "ICD10CM/I26.02": "Saddle embolus of pulmonary artery with acute cor pulmonale",
})
# cause of death, recorded at the death time (vocabulary DEATH_CAUSE, ICD-10 underlying cause)
DEATH_CAUSES = {
    "DEATH_CAUSE/I21.9": "Cause of death: acute myocardial infarction, unspecified",
    "DEATH_CAUSE/I21.4": "Cause of death: non-ST elevation myocardial infarction",
    "DEATH_CAUSE/I63.9": "Cause of death: cerebral infarction, unspecified",
    "DEATH_CAUSE/I46.9": "Cause of death: cardiac arrest, cause unspecified",
    "DEATH_CAUSE/I46.1": "Cause of death: sudden cardiac death, so described",
    "DEATH_CAUSE/I26.99": "Cause of death: other pulmonary embolism without acute cor pulmonale",
    "DEATH_CAUSE/C80.1": "Cause of death: malignant (primary) neoplasm, unspecified",
    "DEATH_CAUSE/A41.9": "Cause of death: sepsis, unspecified organism",
    "DEATH_CAUSE/J96.00": "Cause of death: acute respiratory failure",
    "DEATH_CAUSE/R99": "Cause of death: ill-defined and unknown cause of mortality",
}
MACE_CODES = ["ICD10CM/I21.4", "ICD10CM/I21.9", "ICD10CM/I22.9", "ICD10CM/I63.9"]
MACE_WEIGHTS = [0.35, 0.25, 0.10, 0.30]
ANTICOAGULANTS = ["RXNORM/1364430", "RXNORM/1114195", "RXNORM/11289"]

# --- chronic conditions: (code, description, base log-odds of ever having it, age, -z, sex M,
#     drugs prescribed for it).  'ever' conditions are prevalent at record start with p = 0.6,
#     otherwise they start uniformly within 15 years.
CHRONIC = [
    ("ICD10CM/I10", "Essential (primary) hypertension", -0.9, 1.1, 0.5, 0.2,
     ["RXNORM/29046", "RXNORM/17767"]),
    ("ICD10CM/E78.5", "Hyperlipidemia, unspecified", -1.0, 0.9, 0.3, 0.2, ["RXNORM/83367"]),
    ("ICD10CM/E66.9", "Obesity, unspecified", 0.0, 0.0, 0.0, 0.0, []),  # set from BMI
    ("ICD10CM/N18.3", "Chronic kidney disease, stage 3", -3.0, 1.0, 0.6, 0.1, []),
    ("ICD10CM/F17.210", "Nicotine dependence, cigarettes, uncomplicated", -1.6, -0.2, 0.4, 0.3,
     ["RXNORM/7407"]),
    ("ICD10CM/J44.9", "Chronic obstructive pulmonary disease, unspecified", -3.0, 0.9, 0.6, 0.2,
     ["RXNORM/69120", "RXNORM/435"]),
    ("ICD10CM/I50.9", "Heart failure, unspecified", -3.2, 1.2, 0.8, 0.2,
     ["RXNORM/4603", "RXNORM/20352"]),
    ("ICD10CM/K21.9", "Gastro-esophageal reflux disease without esophagitis", -1.8, 0.3, 0.1, 0.0,
     ["RXNORM/7646"]),
    ("ICD10CM/F32.9", "Major depressive disorder, single episode, unspecified", -1.9, -0.2, 0.3, -0.4,
     ["RXNORM/36437"]),
    ("ICD10CM/M17.9", "Osteoarthritis of knee, unspecified", -2.2, 1.0, 0.1, -0.2, ["RXNORM/41493"]),
    ("ICD10CM/E03.9", "Hypothyroidism, unspecified", -2.4, 0.5, 0.0, -0.8, ["RXNORM/10582"]),
]
CHRONIC_INDEX = {c[0]: i for i, c in enumerate(CHRONIC)}

DRUG_NAMES = {
    "RXNORM/6809": "metformin", "RXNORM/274783": "insulin glargine", "RXNORM/4821": "glipizide",
    "RXNORM/29046": "lisinopril", "RXNORM/17767": "amlodipine", "RXNORM/83367": "atorvastatin",
    "RXNORM/7407": "nicotine", "RXNORM/69120": "tiotropium", "RXNORM/435": "albuterol",
    "RXNORM/4603": "furosemide", "RXNORM/20352": "carvedilol", "RXNORM/7646": "omeprazole",
    "RXNORM/36437": "sertraline", "RXNORM/41493": "meloxicam", "RXNORM/10582": "levothyroxine",
    "RXNORM/1364430": "apixaban", "RXNORM/1114195": "rivaroxaban", "RXNORM/11289": "warfarin",
    "RXNORM/1191": "aspirin", "RXNORM/32968": "clopidogrel",
}
# Zipf long tail of other drugs (never chemotherapy, never the drugs of the modelled processes)
TAIL_DRUGS = {
    "RXNORM/723": "amoxicillin", "RXNORM/18631": "azithromycin", "RXNORM/2231": "cephalexin",
    "RXNORM/2551": "ciprofloxacin", "RXNORM/5640": "ibuprofen", "RXNORM/161": "acetaminophen",
    "RXNORM/10689": "tramadol", "RXNORM/7804": "oxycodone", "RXNORM/25480": "gabapentin",
    "RXNORM/4493": "fluoxetine", "RXNORM/2556": "citalopram", "RXNORM/321988": "escitalopram",
    "RXNORM/10737": "trazodone", "RXNORM/8640": "prednisone", "RXNORM/36567": "simvastatin",
    "RXNORM/6918": "metoprolol", "RXNORM/52175": "losartan", "RXNORM/5487": "hydrochlorothiazide",
    "RXNORM/40790": "pantoprazole", "RXNORM/9997": "spironolactone", "RXNORM/88249": "montelukast",
    "RXNORM/41126": "fluticasone", "RXNORM/20610": "cetirizine", "RXNORM/28889": "loratadine",
    "RXNORM/77492": "tamsulosin", "RXNORM/25025": "finasteride", "RXNORM/519": "allopurinol",
    "RXNORM/596": "alprazolam", "RXNORM/6470": "lorazepam", "RXNORM/39993": "zolpidem",
    "RXNORM/42347": "bupropion", "RXNORM/39786": "venlafaxine", "RXNORM/72625": "duloxetine",
    "RXNORM/21949": "cyclobenzaprine", "RXNORM/301542": "rosuvastatin", "RXNORM/42463": "pravastatin",
    "RXNORM/3443": "diltiazem", "RXNORM/8787": "propranolol",
    "RXNORM/5224": "heparin", "RXNORM/6135": "ketorolac", "RXNORM/7052": "morphine",
    "RXNORM/3264": "dexamethasone", "RXNORM/6902": "methylprednisolone", "RXNORM/8163": "phenylephrine",
    "RXNORM/7512": "norepinephrine", "RXNORM/26225": "ondansetron", "RXNORM/9524": "sennosides",
    "RXNORM/3407": "diphenhydramine", "RXNORM/1998": "cefuroxime", "RXNORM/10180": "sulfamethoxazole",
}

# Zipf long tail of diagnoses: real three-character categories from chapters the simulator does not
# model, each with five sub-codes.  Sub-code descriptions are synthetic.
_TAIL_CATEGORIES = [
    ("M54", "Dorsalgia"), ("J06", "Acute upper respiratory infections"), ("R10", "Abdominal pain"),
    ("Z00", "General examination"), ("R51", "Headache"), ("J02", "Acute pharyngitis"),
    ("N39", "Other disorders of urinary system"), ("R05", "Cough"), ("M25", "Other joint disorder"),
    ("L30", "Other dermatitis"), ("H52", "Disorders of refraction"), ("K59", "Functional intestinal disorders"),
    ("R53", "Malaise and fatigue"), ("F41", "Other anxiety disorders"), ("G47", "Sleep disorders"),
    ("J30", "Vasomotor and allergic rhinitis"), ("H10", "Conjunctivitis"), ("R42", "Dizziness"),
    ("M79", "Other soft tissue disorders"), ("K08", "Disorders of teeth"), ("L70", "Acne"),
    ("B35", "Dermatophytosis"), ("H61", "Other disorders of external ear"), ("J01", "Acute sinusitis"),
    ("R07", "Pain in throat and chest"), ("S93", "Sprain of ankle"), ("Z23", "Encounter for immunization"),
    ("E55", "Vitamin D deficiency"), ("D64", "Other anemias"), ("K52", "Other noninfective gastroenteritis"),
    ("R11", "Nausea and vomiting"), ("M62", "Other disorders of muscle"), ("G43", "Migraine"),
    ("N40", "Benign prostatic hyperplasia"), ("N95", "Menopausal disorders"), ("L40", "Psoriasis"),
    ("K57", "Diverticular disease of intestine"), ("M81", "Osteoporosis without fracture"),
    ("H40", "Glaucoma"), ("H25", "Age-related cataract"), ("R60", "Edema, not elsewhere classified"),
    ("R06", "Abnormalities of breathing"), ("Z87", "Personal history of other conditions"),
    ("Z79", "Long term drug therapy"), ("B34", "Viral infection of unspecified site"),
    ("S61", "Open wound of wrist and hand"), ("T78", "Adverse effects, not elsewhere classified"),
    ("K29", "Gastritis and duodenitis"), ("M65", "Synovitis and tenosynovitis"), ("L03", "Cellulitis"),
    ("E87", "Other disorders of fluid and electrolyte balance"), ("R73", "Elevated blood glucose level"),
    ("Z12", "Encounter for screening for malignant neoplasms"), ("F10", "Alcohol related disorders"),
    ("G56", "Mononeuropathies of upper limb"), ("M75", "Shoulder lesions"), ("I83", "Varicose veins"),
    ("K64", "Hemorrhoids"), ("L57", "Skin changes due to radiation"), ("R35", "Polyuria"),
]
TAIL_DX = {}
for _cat, _desc in _TAIL_CATEGORIES:
    for _k in (0, 1, 2, 8, 9):
        TAIL_DX[f"ICD10CM/{_cat}.{_k}"] = f"{_desc} (synthetic sub-code {_k})"

# --- chest X-ray findings (CheXpert order) --------------------------------------------------------
CXR_FINDINGS = [
    "Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Enlarged_Cardiomediastinum", "Fracture",
    "Lung_Lesion", "Lung_Opacity", "No_Finding", "Pleural_Effusion", "Pleural_Other", "Pneumonia",
    "Pneumothorax", "Support_Devices",
]
CXR_FINDING_CODES = [f"CXR_FINDING/{f}" for f in CXR_FINDINGS]
# report phrases: (positive variants, negative/negated variants)
CXR_PHRASES = {
    "Atelectasis": (["Bibasilar atelectasis.", "Left basilar atelectasis is noted.",
                     "Subsegmental atelectasis at the right base."],
                    ["No atelectasis.", "No significant atelectasis."]),
    "Cardiomegaly": (["The heart is enlarged.", "Moderate cardiomegaly.", "Cardiomegaly is present."],
                     ["Heart size is normal.", "No cardiomegaly."]),
    "Consolidation": (["Focal consolidation in the right lower lobe.", "Left lower lobe consolidation."],
                      ["No focal consolidation.", "No consolidation."]),
    "Edema": (["Mild pulmonary edema.", "Interstitial edema is present.",
               "Moderate pulmonary vascular congestion and edema."],
              ["No pulmonary edema.", "No evidence of edema."]),
    "Enlarged_Cardiomediastinum": (["The cardiomediastinal silhouette is widened.",
                                    "Enlarged cardiomediastinal contour."],
                                   ["Cardiomediastinal silhouette is within normal limits."]),
    "Fracture": (["Healing fracture of a left posterior rib.", "Old right clavicle fracture."],
                 ["No acute osseous abnormality.", "No displaced fracture."]),
    "Lung_Lesion": (["A 2 cm nodule in the right upper lobe.", "Left upper lobe mass is seen."],
                    ["No suspicious pulmonary nodule."]),
    "Lung_Opacity": (["Patchy opacities in both lower lobes.", "Hazy opacity at the left base."],
                     ["Lungs are clear.", "No focal opacity."]),
    "No_Finding": (["No acute cardiopulmonary process.", "Normal chest radiograph."], []),
    "Pleural_Effusion": (["Small right pleural effusion.", "Moderate bilateral pleural effusions."],
                         ["No pleural effusion.", "No effusion."]),
    "Pleural_Other": (["Pleural thickening at the left apex.", "Calcified pleural plaques."],
                      ["No pleural thickening."]),
    "Pneumonia": (["Findings compatible with pneumonia.", "Opacity concerning for pneumonia."],
                  ["No evidence of pneumonia."]),
    "Pneumothorax": (["Small right apical pneumothorax.", "Left pneumothorax is present."],
                     ["No pneumothorax."]),
    "Support_Devices": (["Endotracheal tube terminates 4 cm above the carina.",
                         "Right internal jugular central line in place."],
                        ["No lines or tubes."]),
}


def description_for(code: str) -> str:
    """Human-readable description of a generator code.

    Args:
        code: a code in ``VOCAB/CODE`` form that the generator emits.

    Returns:
        The description (the code itself when none is known).
    """
    return _DESCRIPTIONS.get(code, code)


def parent_codes_for(code: str) -> list[str]:
    """Ontology parents of a code (ICD-10 category, imaging study, drug class).

    Args:
        code: a code in ``VOCAB/CODE`` form.

    Returns:
        A list of parent codes (possibly empty); parents need not occur in the data.
    """
    vocab, _, rest = code.partition("/")
    if vocab == "ICD10CM" and "." in rest:
        return [f"ICD10CM/{rest.split('.')[0]}"]
    if vocab == "ICD10PCS":
        return [f"ICD10PCS/{rest[:3]}"]
    if vocab == "CXR_FINDING":
        return ["IMAGING/CXR"]
    if code in CHEMO_DRUGS:
        return ["ATC/L01"]
    return []


def all_codes() -> list[str]:
    """Every code the generator can emit, sorted (the code index order used internally).

    Returns:
        Sorted list of codes; sorting them as strings equals sorting their indices.
    """
    return sorted(_DESCRIPTIONS)


_DESCRIPTIONS: dict[str, str] = {}
_DESCRIPTIONS.update({c: c.split("/")[1].title() for c in SEX_CODES + RACE_CODES + ETHNICITY_CODES})
_DESCRIPTIONS.update({code: desc for code, desc in LABS.values()})
_DESCRIPTIONS.update(EVENT_CODES)
_DESCRIPTIONS.update({s[1]: s[2] for s in CANCER_SITES})
_DESCRIPTIONS.update({c: f"{n} (antineoplastic)" for c, n in CHEMO_DRUGS.items()})
_DESCRIPTIONS.update(METASTASIS_CODES)
_DESCRIPTIONS.update(PROCEDURES)
_DESCRIPTIONS.update(ACUTE_DX)
_DESCRIPTIONS.update(DEATH_CAUSES)
_DESCRIPTIONS.update({c[0]: c[1] for c in CHRONIC})
_DESCRIPTIONS.update(DRUG_NAMES)
_DESCRIPTIONS.update(TAIL_DRUGS)
_DESCRIPTIONS.update(TAIL_DX)
_DESCRIPTIONS.update({c: f"Chest X-ray finding: {f.replace('_', ' ').lower()} (signed report)"
                      for c, f in zip(CXR_FINDING_CODES, CXR_FINDINGS)})
