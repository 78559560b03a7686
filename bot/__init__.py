"""SchoolGuide: answers social-media-policy questions from a cited clause base and hands safeguarding
disclosures to the school's Designated Safeguarding Lead."""

import os

# TensorFlow's oneDNN kernels pick AVX2 or AVX-512 code at run time, and the two round floats differently:
# the same data and seed then train a different model on a different CPU (held-out accuracy moved by over a
# point between two machines). Eigen's kernels are built for one instruction set, so training is the same
# everywhere. Set before anything imports TensorFlow; an explicit setting wins.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

__version__ = "0.1.0"
