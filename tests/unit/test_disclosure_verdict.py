"""What the disclosure figures mean against the thresholds: the reviewer's sentence, the verdict
the release rule reads, and what the owner is told."""

import pytest

from disclosure.facts import AttackFigures, ModelAssessment, TableCheck
from disclosure.services import candidates
from disclosure.verdict import Thresholds, model_verdict, researcher_sentence, table_verdict

LIMITS = Thresholds(max_auc=0.65, max_p_value=0.05, min_cases=10, min_cell_count=10)


def assessed(auc: float, p_value: float | None = 0.001, n: int = 50) -> ModelAssessment:
    attack = AttackFigures("worst-case membership", auc, auc - 0.05, min(auc + 0.05, 1.0), auc - 0.5, p_value)
    return ModelAssessment("model/", attacks=(attack,), n_train=n, n_test=n, seconds=12.0)


def test_a_model_whose_attack_auc_is_high_and_significant_reveals_membership():
    verdict, sentence = model_verdict(assessed(0.83), LIMITS)
    assert verdict == "over"
    assert sentence.startswith("worst-case membership attack AUC 0.83 (95% CI 0.78–0.88), advantage 0.33")
    assert "p = 0.001, on 50 training and 50 held-out cases: this model reveals who was in the training set" in sentence


def test_a_model_near_guessing_shows_no_evidence():
    verdict, sentence = model_verdict(assessed(0.51, p_value=0.8), LIMITS)
    assert verdict == "clear"
    assert "AUC 0.51" in sentence and "p = 0.800" in sentence
    assert sentence.endswith("no evidence of disclosure (threshold AUC 0.65)")


@pytest.mark.parametrize(
    ("auc", "p_value", "expected"),
    [(0.65, 0.01, "over"), (0.649, 0.0, "clear"), (0.9, 0.2, "clear"), (0.7, None, "over")],
)
def test_the_threshold_is_the_auc_and_its_significance(auc, p_value, expected):
    assert model_verdict(assessed(auc, p_value), LIMITS)[0] == expected


def test_a_p_value_too_small_to_print_says_so():
    assert "advantage 0.45, p < 0.001, on 50" in model_verdict(assessed(0.95, p_value=0.0), LIMITS)[1]


def test_the_worst_of_several_attacks_decides():
    mild = AttackFigures("worst-case membership", 0.55, 0.5, 0.6, 0.05, 0.2)
    strong = AttackFigures("likelihood ratio", 0.9, 0.85, 0.95, 0.7, 0.0001)
    verdict, sentence = model_verdict(ModelAssessment("m/", attacks=(mild, strong), n_train=30, n_test=30), LIMITS)
    assert verdict == "over" and sentence.startswith("likelihood ratio attack AUC 0.90")


def test_too_few_cases_cannot_be_assessed():
    verdict, sentence = model_verdict(assessed(0.99, n=4), LIMITS)
    assert verdict == "unassessed"
    assert "only 4 training and 4 held-out cases were answered; the attack needs at least 10 of each" in sentence


def test_a_broken_model_and_a_platform_fault_are_told_apart():
    broken = ModelAssessment(
        "model/", model_problem="predict() answered shape (2, 3) where one probability was declared"
    )
    assert model_verdict(broken, LIMITS) == (
        "unassessed",
        "could not be assessed: predict() answered shape (2, 3) where one probability was declared",
    )
    hung = ModelAssessment("model/", model_problem="could not be assessed: it gave no answer within 60 s")
    assert model_verdict(hung, LIMITS)[1] == "could not be assessed: it gave no answer within 60 s"
    verdict, sentence = model_verdict(ModelAssessment("model/", fault="the engine did not answer"), LIMITS)
    assert verdict == "unassessed"
    assert "the platform failed (the engine did not answer); this says nothing about the model" in sentence
    assert model_verdict(ModelAssessment("model/", n_train=40, n_test=40), LIMITS)[0] == "unassessed"


def test_table_checks():
    small = TableCheck("counts.csv", is_table=True, cells=12, small_cells=2, min_count=10, detail="threshold rule")
    assert table_verdict(small) == (
        "over",
        "2 of 12 cells under the minimum count of 10: the table may identify people (threshold rule)",
    )
    dominated = TableCheck("means.csv", is_table=True, cells=6, dominated_cells=1, min_count=10)
    assert table_verdict(dominated)[0] == "over" and "1 of 6 cells dominated" in table_verdict(dominated)[1]
    fine = TableCheck("counts.csv", is_table=True, cells=12, min_count=10)
    assert table_verdict(fine) == ("clear", "12 cells, none under the minimum count of 10 and none dominated")
    assert table_verdict(TableCheck("log.csv", is_table=False))[0] == "not_applicable"
    assert table_verdict(TableCheck("x.csv", is_table=True, fault="ACRO crashed"))[0] == "unassessed"


def test_the_owner_is_told_the_verdict_never_why_a_model_failed():
    assert researcher_sentence("model", "over", [{"auc": 0.83}]) == (
        "membership attack AUC 0.83: this model reveals who was in the training set"
    )
    assert researcher_sentence("model", "clear", [{"auc": 0.5}, {"auc": 0.512}]).startswith(
        "membership attack AUC 0.51"
    )
    assert "reviewer sees why" in researcher_sentence("model", "unassessed", [])
    assert researcher_sentence("table", "over", []) == "over ACRO's table rules: it may identify people"


def test_models_are_folders_holding_a_card_and_tables_are_csv_files():
    paths = [
        "model/m2d-model.json",
        "model/predict.py",
        "model/weights.pt",
        "mlflow/pyfunc/MLmodel",
        "m2d-model.json",
        "results/counts.CSV",
        "results/scores.tsv",
        "notes.txt",
        "model.json",
    ]
    assert candidates(paths) == (["", "mlflow/pyfunc/", "model/"], ["results/counts.CSV", "results/scores.tsv"])
