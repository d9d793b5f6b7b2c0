"""Tiny train-seg settings shared by the tests that need a trained DeepLab checkpoint."""


def seg_overrides(root, run_dir, *extra):
    """key=value items for a 2-step resnet_tiny DeepLab on the tiny dataset's own masks."""
    return [f"data.root={root}", f"run_dir={run_dir}", "data.num_workers=0", "device=cpu",
            "seg.backbone=resnet_tiny", "seg.pretrained=none",
            f"seg.label_dir={root / 'SegmentationClassAug'}", "train_seg.iterations=2",
            "train_seg.batch_size=4", "train_seg.crop_size=48", *extra]
