"""What the runner reports of a disclosure-risk assessment: facts only, frozen. The disclosure
services decide what they mean (the verdict against the thresholds in the settings) and record them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AttackFigures:
    """One attack of SACRO-ML on the model's answers for cases it trained on and cases it did not."""

    attack: str  # e.g. "worst-case membership"
    auc: float  # the attack's ROC AUC; 0.5 is guessing
    auc_low: float  # its 95% confidence interval
    auc_high: float
    advantage: float  # the largest TPR - FPR over the attack's thresholds
    p_value: float | None = None  # that the AUC differs from 0.5 by chance


@dataclass(frozen=True)
class ModelAssessment:
    """How the assessment of one exported model ended. Exactly one of: figures (assessed),
    model_problem (the model crashed, hung, answered garbage or the wrong shape: "could not be
    assessed"), fault (the platform failed: never blamed on the model or the researcher)."""

    model_path: str  # the model's folder inside the export, e.g. "model/"
    attacks: tuple[AttackFigures, ...] = ()
    n_train: int = 0  # cases the run trained on that the model answered
    n_test: int = 0  # cases it did not train on
    model_problem: str = ""
    fault: str = ""
    seconds: float = 0.0


@dataclass(frozen=True)
class TableCheck:
    """ACRO's checks of one tabular export file."""

    path: str
    is_table: bool  # looks like an aggregate table (counts or statistics per group)
    cells: int = 0
    small_cells: int = 0  # cells under the minimum count (ACRO's threshold rule)
    dominated_cells: int = 0  # cells where one or two contributors dominate (ACRO's p% / n-k rules)
    min_count: int = 0  # the minimum the check used
    detail: str = ""  # plain words: what was checked and what was found
    fault: str = ""
    # ACRO's own decision on an output it made inside the run's code (pass, fail, review), read from
    # its results file; "" for the platform's check of a finished table
    acro_status: str = ""
    # why the platform does not take ACRO's results at their word (the file changed after ACRO
    # checked it, the finished table has more small cells than ACRO flags)
    doubt: str = ""
