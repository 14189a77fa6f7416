"""Model zoo: importing this package registers every model family."""
from model_zoo import resnet  # noqa: F401
from model_zoo import bert  # noqa: F401
