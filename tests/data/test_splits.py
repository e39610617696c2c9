import numpy as np
import pandas as pd
import pytest

from brainuad.data.splits import age_strata, check_enough_subjects, healthy_splits, min_subjects, pathology_splits
from brainuad.data.splits import splits_from_manifest

SUBJ = [f"s{i:03d}" for i in range(40)]
AGES = np.linspace(20, 85, 40)


def test_healthy_kfold_partitions_the_non_test_subjects():
    sp = healthy_splits(SUBJ, AGES, folds=4, test=8, val_fraction=None, age_bins=4, seed=1)
    assert len(sp["test"]) == 8 and sp["stratified"]
    rest = set(SUBJ) - set(sp["test"])
    vals = [set(f["val"]) for f in sp["folds"]]
    assert set().union(*vals) == rest and sum(map(len, vals)) == len(rest)  # disjoint cover
    for f in sp["folds"]:
        assert set(f["train"]) | set(f["val"]) == rest and not set(f["train"]) & set(f["val"])


def test_healthy_shuffle_splits_have_requested_size_and_are_age_stratified():
    sp = healthy_splits(SUBJ, AGES, folds=3, test=0.25, val_fraction=0.25, age_bins=2, seed=0)
    assert len(sp["test"]) == 10
    age = dict(zip(SUBJ, AGES))
    for f in sp["folds"]:
        assert len(f["val"]) == 8 and len(f["train"]) == 22
        young = sum(age[s] < np.median([age[t] for t in set(SUBJ) - set(sp["test"])]) for s in f["val"])
        assert young == 4  # two equal age strata -> 4 + 4
    # test set is stratified too: 5 below and 5 above the median age of all subjects
    assert sum(age[s] < np.median(AGES) for s in sp["test"]) == 5


def test_splits_are_deterministic_and_independent_of_input_order():
    a = healthy_splits(SUBJ, AGES, folds=2, test=6, seed=3)
    order = np.random.default_rng(0).permutation(40)
    b = healthy_splits(np.asarray(SUBJ)[order], AGES[order], folds=2, test=6, seed=3)
    assert a == b
    assert healthy_splits(SUBJ, AGES, folds=2, test=6, seed=4) != a


def test_missing_ages_fall_back_to_unstratified():
    sp = healthy_splits(SUBJ, [""] * 40, folds=2, test=4)
    assert not sp["stratified"] and len(sp["test"]) == 4
    assert age_strata([30, 40, None], 2, 1) is None


def test_pathology_split_counts_and_fraction():
    sp = pathology_splits(SUBJ[:10], val=3, seed=0)
    assert len(sp["val"]) == 3 and len(sp["test"]) == 7 and not set(sp["val"]) & set(sp["test"])
    assert len(pathology_splits(SUBJ[:10], val=0.2)["val"]) == 2
    with pytest.raises(ValueError, match="val=10"):
        pathology_splits(SUBJ[:10], val=10)


def test_small_cohort_with_more_age_bins_than_validation_subjects():
    # 14 subjects, 4 test, 10 left, 2 validation subjects but 3 requested age bins (the demo's sizes)
    subj, ages = SUBJ[:14], AGES[:14]
    sp = healthy_splits(subj, ages, folds=2, test=4, val_fraction=0.25, age_bins=3, seed=3141)
    assert len(sp["test"]) == 4 and all(len(f["val"]) == 2 and len(f["train"]) == 8 for f in sp["folds"])
    age = dict(zip(subj, ages))
    rest = sorted(set(subj) - set(sp["test"]), key=age.get)
    for f in sp["folds"]:  # two strata -> one validation subject from each age half
        assert sum(s in rest[:5] for s in f["val"]) == 1


def test_splits_from_manifest_folds_and_pathology_sets():
    healthy = [{"subject": "a", "split": "test"}, {"subject": "b", "split": "train/0,val/1"},
               {"subject": "c", "split": "val/0,train/1"}, {"subject": "d", "split": "train/0,train/1"}]
    assert splits_from_manifest(pd.DataFrame(healthy)) == {
        "test": ["a"], "folds": [{"train": ["b", "d"], "val": ["c"]}, {"train": ["c", "d"], "val": ["b"]}],
        "stratified": False, "origin": "author_split"}
    pathology = [{"subject": "x", "split": "val"}, {"subject": "y", "split": "test"},
                 {"subject": "z", "split": "test"}]
    assert splits_from_manifest(pathology) == {"val": ["x"], "test": ["y", "z"], "origin": "author_split"}
    with pytest.raises(ValueError, match="split column is empty"):
        splits_from_manifest([{"subject": "a", "split": ""}])


@pytest.mark.parametrize(("role", "kwargs", "needed"), [
    ("healthy", {"folds": 2, "test": 2}, 4),
    ("healthy", {"folds": 5, "test": 2}, 7),
    ("healthy", {"folds": 2, "test": 0.5}, 4),  # round(0.5 * 4) = 2 test + 2 for the folds
    ("healthy", {"folds": 2, "test": 2, "val_fraction": 0.25}, 5),  # round(0.25 * 3) = 1 validation subject
    ("pathology", {"val": 1}, 2),
    ("pathology", {"val": 0.1}, 6),  # round(0.1 * 6) = 1 validation subject (round(0.5) = 0)
])
def test_min_subjects(role, kwargs, needed):
    assert min_subjects(role, **kwargs) == needed
    make = healthy_splits if role == "healthy" else pathology_splits
    make(SUBJ[:needed], **kwargs)
    with pytest.raises(ValueError):
        make(SUBJ[:needed - 1], **kwargs)


def test_too_few_subjects_left_names_the_counts_and_the_exclusion_lists():
    check_enough_subjects(4, "healthy_t2", "healthy", folds=2, test=2)
    with pytest.raises(ValueError) as error:
        check_enough_subjects(1, "healthy_t2", "healthy", folds=2, test=2)
    message = str(error.value)
    assert "dataset healthy_t2: 1 subject(s) left after exclusions" in message and "at least 4" in message
    assert "results/data/healthy_t2/exclusions.tsv" in message and "results/qc/healthy_t2/exclusions.tsv" in message
    with pytest.raises(ValueError, match="ms_t2: 1 subject.* at least 2"):
        check_enough_subjects(1, "ms_t2", "pathology", val=1)


def test_stage2_train_subjects_are_held_out_of_the_test_split():
    """SADM block III: the labelled training subjects never appear in the test (or validation) split."""
    from brainuad.data.splits import pathology_splits

    subjects = [f"s{i:02d}" for i in range(20)]
    plain = pathology_splits(subjects, val=4, seed=5)
    held = pathology_splits(subjects, val=4, seed=5, train=0.1)
    assert "train" not in plain and plain == pathology_splits(subjects, val=4, seed=5, train=0)
    assert len(held["train"]) == 2 and held["val"] == plain["val"]
    assert not set(held["train"]) & set(held["test"]) and not set(held["train"]) & set(held["val"])
    assert sorted(held["train"] + held["test"]) == plain["test"]
    with pytest.raises(ValueError, match="no test subjects"):
        pathology_splits(subjects[:5], val=2, train=3)
