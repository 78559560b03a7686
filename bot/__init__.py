"""SchoolGuide: answers social-media-policy questions from a cited clause base and hands safeguarding
disclosures to the school's Designated Safeguarding Lead."""

import os

# TensorFlow turns its oneDNN kernels on only on some CPUs (AVX-512 VNNI/BF16, AMX), and they round floats
# differently from Eigen's, so the same data and seed could train a different model on a different CPU. Off
# everywhere removes that one CPU-dependent path (on a CPU where it was already off, nothing changes). Set
# before anything imports TensorFlow; an explicit setting wins.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

__version__ = "0.1.0"
