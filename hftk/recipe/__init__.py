"""Recipes: YAML files validated into typed objects, with `--set a.b=c` overrides.

`schema` holds the sections of `hftk pretrain` / `hftk finetune` recipes, `loading` reads
files and applies overrides; `pipeline` (the `hftk run` file) and `distill` (the `hftk distill`
recipe) are imported from their own modules.
"""

from hftk.recipe.loading import (
    apply_overrides,
    dump_recipe,
    flat_config,
    format_validation_error,
    load_recipe,
    override_keys,
    read_yaml,
    recipe_paths,
    RECIPES_DIR,
    resolve_recipe_path,
    validate,
)
from hftk.recipe.schema import (
    did_you_mean,
    ElectraSection,
    FinetuneDataSection,
    FinetuneModelSection,
    FinetuneRecipe,
    FinetuneTrainingSection,
    FreshModelSection,
    GenerationSection,
    LoraSection,
    model_source,
    ModelSection,
    OutputSection,
    PretrainDataSection,
    PretrainDistillSection,
    PretrainRecipe,
    resolve_generator_sizes,
    Section,
    TokenizerSection,
    TrainingSection,
)

__all__ = [
    "apply_overrides",
    "did_you_mean",
    "dump_recipe",
    "ElectraSection",
    "FinetuneDataSection",
    "FinetuneModelSection",
    "FinetuneRecipe",
    "FinetuneTrainingSection",
    "FreshModelSection",
    "flat_config",
    "format_validation_error",
    "GenerationSection",
    "load_recipe",
    "LoraSection",
    "model_source",
    "ModelSection",
    "OutputSection",
    "override_keys",
    "PretrainDataSection",
    "PretrainDistillSection",
    "PretrainRecipe",
    "read_yaml",
    "recipe_paths",
    "RECIPES_DIR",
    "resolve_generator_sizes",
    "resolve_recipe_path",
    "Section",
    "TokenizerSection",
    "TrainingSection",
    "validate",
]
