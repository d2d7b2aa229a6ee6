"""Where the tests find the repository's configs and tools."""

import os

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIGS = os.path.join(ROOT, "configs")
TOOLS = os.path.join(ROOT, "tools")
# The quickstart config: PASA Mask R-CNN R-18 on the embedded instance set.
QUICK_INSTANCE = os.path.join(
    CONFIGS, "Synthetic-InstanceSegmentation", "mask_rcnn_R_18_FPN_quick_pasa.yaml"
)
QUICK_SEMANTIC = os.path.join(
    CONFIGS, "Synthetic-SemanticSegmentation", "semantic_R_18_FPN_quick_pasa.yaml"
)
