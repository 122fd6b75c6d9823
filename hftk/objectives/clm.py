"""Causal language modelling (GPT): predict every next token."""

from __future__ import annotations

from hftk.objectives.base import Objective


class CausalLanguageModelling(Objective):
    """Labels are the inputs; the model shifts them, so each block has length-1 targets."""

    @staticmethod
    def prepare(batch: dict, index: int, evaluation: bool = False) -> dict:
        return {"input_ids": batch["input_ids"], "labels": batch["input_ids"]}

    @staticmethod
    def count_targets(batch: dict) -> int:
        labels = batch["labels"]
        return int(labels.shape[0] * (labels.shape[1] - 1))
