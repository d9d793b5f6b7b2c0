"""Variants of configs/demo.yaml the tests share."""

# configs/demo.yaml trained from random weights instead of `vwe pretrain`'s backbone (README,
# "from scratch"): batch statistics, everything trains, a larger rate and real momentum.
DEMO_FROM_SCRATCH = ["model.pretrained=none", "model.frozen_bn=false", "model.freeze_stem=false",
                     "model.detach_after_stage2=false", "train_cam.lr=0.05",
                     "train_cam.momentum=0.9"]
