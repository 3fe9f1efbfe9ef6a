"""The built-in tasks: translation, language_model, classification, regression, and the synthetic
seq2seq tasks copy, reverse and sort."""

from seqkit import hookimpl
from seqkit_tasks.classification import ClassificationConfig, ClassificationTask
from seqkit_tasks.language_model import LanguageModelConfig, LanguageModelTask
from seqkit_tasks.regression import RegressionConfig, RegressionTask
from seqkit_tasks.synthetic import CopyTask, ReverseTask, SortTask, SyntheticConfig
from seqkit_tasks.translation import TranslationConfig, TranslationTask


@hookimpl
def register_tasks(register):
    register("translation", TranslationTask, TranslationConfig)
    register("language_model", LanguageModelTask, LanguageModelConfig)
    register("classification", ClassificationTask, ClassificationConfig)
    register("regression", RegressionTask, RegressionConfig)
    register("copy", CopyTask, SyntheticConfig)
    register("reverse", ReverseTask, SyntheticConfig)
    register("sort", SortTask, SyntheticConfig)
