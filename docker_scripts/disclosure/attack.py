"""SACRO-ML's worst-case membership attack on a model's answers, for the platform's review.

    attack.py SCORES_JSON REPORT_JSON

SCORES_JSON: {"train": [p, ...], "test": [p, ...]}, each p the model's probability of the positive
class for a case it trained on (train) or one it did not (test). The attack (sacroml's
WorstCaseAttack) trains a classifier to tell the two apart from the answers alone, ten times on 80 %
of them, and scores it on the rest.

REPORT_JSON: {"auc", "auc_low", "auc_high", "advantage", "p_value", ...}: the mean AUC of the ten
repetitions; its 95 % interval from Hanley and McNeil's standard error for the cases answered (each
lies in some repetition's held-out slice); the mean of each repetition's largest TPR - FPR over its
thresholds; and SACRO-ML's p-value (metrics.auc_p_val) that an AUC this high arises by chance
among that many cases. Each repetition's own p-value, on its slice, is kept beside them.
"""

from __future__ import annotations

import json
import logging
import math
import sys

import numpy as np
from sacroml import metrics
from sacroml.attacks.target import Target
from sacroml.attacks.worst_case_attack import WorstCaseAttack
from sacroml.version import __version__ as sacroml_version

N_REPS = 10
# SACRO-ML's default attack model (a random forest with these limits), seeded: the same answers
# give the same figures on every assessment.
ATTACK_MODEL = {"min_samples_split": 20, "min_samples_leaf": 10, "max_depth": 5, "random_state": 0}


def as_proba(values: list[float]) -> np.ndarray:
    p = np.asarray(values, dtype=float)
    return np.column_stack([1.0 - p, p])


def hanley_mcneil_variance(auc: float, n_pos: int, n_neg: int) -> float:
    """The variance of an observed AUC (Hanley and McNeil 1982); SACRO-ML's own formula is the
    variance under the null (AUC 0.5), which shrinks below zero away from it."""
    q1, q2 = auc / (2 - auc), 2 * auc**2 / (1 + auc)
    variance = (auc * (1 - auc) + (n_pos - 1) * (q1 - auc**2) + (n_neg - 1) * (q2 - auc**2)) / (n_pos * n_neg)
    return max(0.0, variance)


def main(scores_path: str, report_path: str) -> None:
    logging.disable(logging.INFO)  # sacroml logs each repetition; the platform keeps the figures
    with open(scores_path, encoding="utf-8") as f:
        scores = json.load(f)
    target = Target(proba_train=as_proba(scores["train"]), proba_test=as_proba(scores["test"]))
    attack = WorstCaseAttack(
        output_dir="/tmp/sacroml",
        write_report=False,
        n_reps=N_REPS,
        n_dummy_reps=0,
        attack_model_params=ATTACK_MODEL,
    )
    attack.attack(target)
    reps = attack.attack_metrics
    if not reps:
        raise SystemExit("the attack ran no repetition")
    auc = float(np.mean([m["AUC"] for m in reps]))
    # Every case is in some repetition's held-out slice: the mean stands on all the answers.
    n_pos, n_neg = len(scores["train"]), len(scores["test"])
    spread = 1.96 * math.sqrt(hanley_mcneil_variance(auc, n_pos, n_neg))
    p_value, _ = metrics.auc_p_val(auc, n_pos, n_neg)
    report = {
        "attack": "worst-case membership",
        "auc": round(auc, 4),
        "auc_low": round(max(0.0, auc - spread), 4),
        "auc_high": round(min(1.0, auc + spread), 4),
        "advantage": round(float(np.mean([np.max(m["tpr"] - m["fpr"]) for m in reps])), 4),
        "p_value": float(p_value),
        "rep_aucs": [round(float(m["AUC"]), 4) for m in reps],
        "n_train": len(scores["train"]),
        "n_test": len(scores["test"]),
        "slice_p_values": [float(m["P_HIGHER_AUC"]) for m in reps],
        "sacroml": sacroml_version,
    }
    with open(report_path, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=1)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
