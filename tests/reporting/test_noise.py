"""The noise a pretrained-vs-baseline difference must clear, against hand computations."""

import math

import pytest

from hftk.reporting.noise import NOT_ASSESSED, WITHIN, binomial_se, difference_noise, proportion_scale, seed_spread, verdict


def test_binomial_se_shrinks_p_by_one_success_and_one_failure():
    # n=1000, p=0.8: p~ = 801/1002, SE = sqrt(801*201/1002^2/1000)
    assert binomial_se(0.8, 1000) == pytest.approx(math.sqrt(801 * 201 / 1002**2 / 1000))
    assert binomial_se(0.8, 1000) == pytest.approx(0.012663, abs=1e-6)
    # a score of 0 on 128 examples still has an error: p~ = 1/130
    assert binomial_se(0.0, 128) == pytest.approx(math.sqrt((1 / 130) * (129 / 130) / 128))
    # QA's 0-100 scale: same proportion, error in points
    assert binomial_se(80.0, 1000, scale=100) == pytest.approx(100 * binomial_se(0.8, 1000))
    with pytest.raises(ValueError):
        binomial_se(0.5, 0)


@pytest.mark.parametrize(
    ("key", "task", "scale"),
    [("eval_accuracy", "classification", 1.0), ("test_f1", "ner", 1.0), ("eval_f1", "qa", 100.0), ("eval_exact", "qa", 100.0),
     ("eval_matthews_correlation", "glue", None), ("eval_rougeL", "generation", None), ("eval_pearson", "glue", None)],
)
def test_which_metrics_are_proportions(key, task, scale):
    assert proportion_scale(key, task) == scale


def test_single_runs_on_1000_examples():
    # 0.80 vs 0.78: SE of the difference = sqrt((801*201 + 781*221) / 1002^2 / 1000) = 0.018228 < 0.02
    noise = difference_noise([0.80], [0.78], "test_accuracy", "classification", 1000)
    assert noise.level == pytest.approx(0.018228, abs=1e-6) and noise.source == "binomial SE, n=1000"
    assert verdict(0.80 - 0.78, noise) == "pretrained higher"
    assert verdict(0.78 - 0.80, noise) == "baseline higher"
    # The README's fine_foods numbers: 0.801 vs 0.785 is inside the noise of a 1,000-review test set.
    readme = difference_noise([0.801], [0.785], "test_accuracy", "classification", 1000)
    assert readme.level == pytest.approx(0.018134, abs=1e-6)
    assert verdict(0.801 - 0.785, readme) == WITHIN


def test_the_issue_case_a_near_zero_f1_is_no_gain():
    # wnut16 in pipeline-tiny: entity F1 0.0024 vs 0.0 on 128 sentences.
    # p~1 = (0.3072+1)/130 = 0.0100554, p~2 = 1/130; SE = sqrt(p~1 q~1/128 + p~2 q~2/128) = 0.011722
    noise = difference_noise([0.0024], [0.0], "eval_f1", "ner", 128)
    assert noise.level == pytest.approx(0.011722, abs=1e-6)
    assert verdict(0.0024, noise) == WITHIN


def test_qa_f1_on_the_percent_scale():
    # 19.3 vs 13.1 F1 on 2197 questions: p~ = (424.021+1)/2199, (287.807+1)/2199 -> SE 1.1086 points
    noise = difference_noise([19.3], [13.1], "test_f1", "qa", 2197)
    assert noise.level == pytest.approx(1.1086, abs=1e-4)
    assert verdict(6.2, noise) == "pretrained higher"


def test_seed_spread_and_binomial_error_the_larger_counts():
    pretrained, baseline = [0.80, 0.82, 0.84], [0.79, 0.80, 0.81]
    assert seed_spread(pretrained) == pytest.approx(0.02) and seed_spread(baseline) == pytest.approx(0.01)
    assert seed_spread([0.8]) is None
    # n=100: means 0.82 / 0.80, p~ = 83/102, 81/102 -> SE sqrt((83*19 + 81*21)/102^2/100) = 0.056131 > spread 0.02
    noise = difference_noise(pretrained, baseline, "eval_accuracy", "classification", 100)
    assert noise.level == pytest.approx(math.sqrt((83 * 19 + 81 * 21) / 102**2 / 100)) and noise.source == "binomial SE, n=100"
    assert verdict(0.02, noise) == WITHIN
    # no binomial model for a correlation: the seed spread (0.02) alone decides
    shifted = [0.83, 0.85, 0.87]
    spread_only = difference_noise(shifted, baseline, "eval_pearson", "glue", 100)
    assert spread_only.level == pytest.approx(0.02) and spread_only.source == "seed spread"
    assert verdict(0.85 - 0.80, spread_only) == "pretrained higher"
    assert verdict(0.015, spread_only) == WITHIN


def test_one_run_of_a_metric_without_standard_error_is_not_assessed():
    noise = difference_noise([0.30], [0.20], "eval_rougeL", "generation", 445)
    assert noise.level is None
    assert verdict(0.1, noise) == NOT_ASSESSED
    # a proportion without a recorded example count cannot be assessed either
    assert difference_noise([0.9], [0.1], "eval_accuracy", "classification", None).level is None
