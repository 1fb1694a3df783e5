"""Task models built from ``Recurrent`` layers: the design patterns of the RNN syllabus."""

from .attention import AdditiveAttention as AdditiveAttention
from .captioner import Captioner as Captioner
from .captioner import ImageEncoder as ImageEncoder
from .classifier import SequenceClassifier as SequenceClassifier
from .conditioned import ConditionedGenerator as ConditionedGenerator
from .esn import EchoStateNetwork as EchoStateNetwork
from .esn_classifier import EchoStateClassifier as EchoStateClassifier
from .jordan import JordanNetwork as JordanNetwork
from .language_model import LanguageModel as LanguageModel
from .language_model import LanguageModelConfig as LanguageModelConfig
from .seq2seq import Seq2Seq as Seq2Seq
from .tagger import SequenceTagger as SequenceTagger
from .tree_model import TreeModel as TreeModel
