"""What the runner's figures mean, judged against thresholds that are settings: pure functions, so
that the reviewer's page, the release rule and the provenance record all say the same thing."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from django.conf import settings

from .facts import AttackFigures, ModelAssessment, TableCheck

PENDING, CLEAR, OVER, UNASSESSED, NOT_APPLICABLE = "pending", "clear", "over", "unassessed", "not_applicable"


@dataclass(frozen=True)
class Thresholds:
    max_auc: float  # an attack AUC at or above this reveals membership...
    max_p_value: float  # ...when it differs from guessing (0.5) beyond chance
    min_cases: int  # of each split, for the attack to say anything
    min_cell_count: int

    def as_dict(self) -> dict:
        return asdict(self)


def thresholds() -> Thresholds:
    return Thresholds(
        max_auc=settings.M2D_DISCLOSURE_MAX_AUC,
        max_p_value=settings.M2D_DISCLOSURE_MAX_P_VALUE,
        min_cases=settings.M2D_DISCLOSURE_MIN_CASES,
        min_cell_count=settings.M2D_DISCLOSURE_MIN_CELL_COUNT,
    )


def worst(attacks: tuple[AttackFigures, ...]) -> AttackFigures | None:
    return max(attacks, key=lambda a: a.auc) if attacks else None


def attack_over(attack: AttackFigures, limits: Thresholds) -> bool:
    significant = attack.p_value is None or attack.p_value <= limits.max_p_value
    return attack.auc >= limits.max_auc and significant


def figures_text(attack: AttackFigures, n_train: int, n_test: int) -> str:
    text = (
        f"{attack.attack} attack AUC {attack.auc:.2f} (95% CI {attack.auc_low:.2f}–{attack.auc_high:.2f}), "
        f"advantage {attack.advantage:.2f}"
    )
    if attack.p_value is not None:
        text += ", p < 0.001" if attack.p_value < 0.001 else f", p = {attack.p_value:.3f}"
    return f"{text}, on {n_train} training and {n_test} held-out cases"


def model_verdict(assessment: ModelAssessment, limits: Thresholds) -> tuple[str, str]:
    """(verdict, the reviewer's sentence) for one model."""
    if assessment.fault:
        return UNASSESSED, (
            f"could not be assessed: the platform failed ({assessment.fault}); this says nothing about the model"
        )
    if assessment.model_problem:
        return UNASSESSED, f"could not be assessed: {assessment.model_problem.removeprefix('could not be assessed: ')}"
    attack = worst(assessment.attacks)
    if attack is None:
        return UNASSESSED, "could not be assessed: the assessment reported no attack figures"
    if min(assessment.n_train, assessment.n_test) < limits.min_cases:
        return UNASSESSED, (
            f"could not be assessed: only {assessment.n_train} training and {assessment.n_test} held-out cases "
            f"were answered; the attack needs at least {limits.min_cases} of each"
        )
    figures = figures_text(attack, assessment.n_train, assessment.n_test)
    if attack_over(attack, limits):
        return OVER, f"{figures}: this model reveals who was in the training set (threshold AUC {limits.max_auc:.2f})"
    return CLEAR, f"{figures}: no evidence of disclosure (threshold AUC {limits.max_auc:.2f})"


def table_verdict(check: TableCheck) -> tuple[str, str]:
    """(verdict, the reviewer's sentence) for one tabular file, by ACRO's rules at check.min_count."""
    if check.fault:
        return UNASSESSED, f"could not be checked: the platform failed ({check.fault})"
    if not check.is_table:
        return NOT_APPLICABLE, "does not look like an aggregate table; no table checks apply" + _detail(check)
    if check.acro_status:
        return _acro_verdict(check)
    found = []
    if check.small_cells:
        found.append(f"{check.small_cells} of {check.cells} cells under the minimum count of {check.min_count}")
    if check.dominated_cells:
        found.append(f"{check.dominated_cells} of {check.cells} cells dominated by one or two contributors")
    if found:
        return OVER, "; ".join(found) + ": the table may identify people" + _detail(check)
    return CLEAR, (
        f"{check.cells} cells, none under the minimum count of {check.min_count} and none dominated" + _detail(check)
    )


def _acro_verdict(check: TableCheck) -> tuple[str, str]:
    """ACRO decided on the microdata, in the run's code: anything but its pass (fail, or review by a
    person) is over, and so is a pass whose outcome flags a cell or that the platform doubts."""
    found = [f"ACRO marked it {check.acro_status}"]
    if check.dominated_cells:
        found.append(f"{check.dominated_cells} of {check.cells} cells dominated by one or two contributors")
    if check.small_cells:
        found.append(f"{check.small_cells} of {check.cells} cells under the minimum count of {check.min_count}")
    if check.doubt:
        found.append(check.doubt)
    if check.acro_status != "pass" or len(found) > 1:
        return OVER, "; ".join(found) + ": the output may identify people" + _detail(check)
    return CLEAR, "ACRO's checks passed" + _detail(check)


def _detail(check: TableCheck) -> str:
    return f" ({check.detail})" if check.detail else ""


def researcher_sentence(kind: str, verdict: str, attacks: list[dict]) -> str:
    """What the owner is told: the verdict and the attack's AUC, never why a model failed (its error
    output was written while it read the data) nor the counts of a table nobody has released."""
    if verdict == PENDING:
        return "being assessed"
    if verdict == UNASSESSED:
        return "could not be assessed; the reviewer sees why, and its release needs a second admin"
    if verdict == NOT_APPLICABLE:
        return "not an aggregate table; no table checks apply"
    if kind == "table":
        return "over ACRO's table rules: it may identify people" if verdict == OVER else "passes ACRO's table rules"
    auc = max(a["auc"] for a in attacks)
    if verdict == OVER:
        return f"membership attack AUC {auc:.2f}: this model reveals who was in the training set"
    return f"membership attack AUC {auc:.2f}: no evidence of disclosure"
