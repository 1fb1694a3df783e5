"""Task models built from ``Recurrent`` layers."""

from .language_model import LanguageModel as LanguageModel
from .language_model import LanguageModelConfig as LanguageModelConfig
