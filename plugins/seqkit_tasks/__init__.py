"""The built-in tasks: translation, language_model, classification, regression, and the synthetic
seq2seq tasks copy, reverse and sort. Each task's module (torch, tokenizers) is imported when the
task is built; listing them imports only their option classes (seqkit_tasks.config)."""

from seqkit import hookimpl
from seqkit_tasks.config import (
    ClassificationConfig,
    LanguageModelConfig,
    RegressionConfig,
    SyntheticConfig,
    TranslationConfig,
)


@hookimpl
def register_tasks(register):
    register("translation", "seqkit_tasks.translation:TranslationTask", TranslationConfig)
    register("language_model", "seqkit_tasks.language_model:LanguageModelTask", LanguageModelConfig)
    register("classification", "seqkit_tasks.classification:ClassificationTask", ClassificationConfig)
    register("regression", "seqkit_tasks.regression:RegressionTask", RegressionConfig)
    register("copy", "seqkit_tasks.synthetic:CopyTask", SyntheticConfig)
    register("reverse", "seqkit_tasks.synthetic:ReverseTask", SyntheticConfig)
    register("sort", "seqkit_tasks.synthetic:SortTask", SyntheticConfig)
