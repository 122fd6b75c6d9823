"""hftk: pretrain your own Transformers, fine-tune and evaluate them, share them on the Hub.

Importing hftk registers its model types with transformers' Auto classes.
"""

from hftk.models import register_auto_classes

register_auto_classes()

__version__ = "0.1.0"
