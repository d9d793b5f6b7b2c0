"""The config schema: one typed dataclass per stage, defaults equal to the paper's VOC settings.

Every key a YAML file or a `key=value` override may set is a field here; the loader
(`config/loader.py`) refuses any other. Training sections derive from `LoopSettings`, the keys the
one training loop reads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from vwe.config.valid import check

# the project's ResNets; any other name is a timm CNN, checked when the network is built
BACKBONES = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet_tiny")


@dataclass
class DataConfig:
    """Where the dataset lies and how it is read (docs/formats.md#datasets)."""

    # voc: VOC 2012 + SBD layout | folder: images + tags | coco: COCO 2014 (`vwe prepare-coco`)
    format: str = check("voc", choices=("voc", "folder", "coco"))
    root: str = "data/synthetic"  # voc: the VOC root; folder: the images' folder; coco: the
    # folder holding train2014/, val2014/, annotations/
    train_list: str = "train_aug"  # CAM and IRN training split
    mask_dir: str = "SegmentationClassAug"  # falls back to SegmentationClass when absent
    num_workers: int = check(2, ge=0)  # DataLoader worker processes per rank
    sbd_root: str = ""  # SBD 'dataset' folder (train.txt, val.txt) for `vwe prepare-voc`
    tags: str = ""  # folder: CSV name,tags or JSON {name: [tags]}; empty: <root>/tags.csv
    masks: str = ""  # folder: optional masks (<name>.png) for evaluation
    classes: list[str] = field(default_factory=list)  # folder: empty: classes.txt or the tags
    val_fraction: float = check(0.1, ge=0, le=1)  # folder without splits/: hashed val share
    # folder: a list of photos with no object (one name a line; relative to the root), added to
    # the training splits with an all-zero label; empty: none (an untagged photo is an error)
    negatives: str = ""
    # coco: crowd annotations in the masks: background (left out) | ignore (255) | label
    coco_crowd: str = check("background", choices=("background", "ignore", "label"))
    coco_prepared: str = ""  # coco: what prepare-coco writes; empty: <root>/vwe_prepared


@dataclass
class SyntheticConfig:
    """The generated dataset of docs/synthetic.md (VOC layout unless `format` says otherwise)."""

    # voc | folder (images + tags.csv + masks/) | coco (train2014/, val2014/, instances JSONs)
    format: str = check("voc", choices=("voc", "folder", "coco"))
    # default | tiny: the split sizes and image sizes below are scaled
    size: str = check("default", choices=("default", "tiny"))
    num_classes: int = check(8, ge=1)
    num_train_aug: int = 2000
    num_train: int = 300
    num_val: int = 300
    num_test: int = 100
    min_side: int = check(96, ge=16)
    max_side: int = check(160, ge=16)
    # side of the discriminative part relative to the object
    part_fraction: float = check(0.3, gt=0, le=1)
    # chance that a context class sits on its own background texture
    context_prob: float = check(0.8, ge=0, le=1)
    max_instances: int = check(4, ge=1)
    # images with one object filling most of the frame
    full_frame_prob: float = check(0.05, ge=0, le=1)
    jpeg_quality: int = check(85, ge=1, le=100)
    noise_std: float = check(4.0, ge=0)
    blur_prob: float = check(0.3, ge=0, le=1)
    seed: int = 0


@dataclass
class ModelConfig:
    """The CAM network: backbone, Visual Words Encoder, HSPP (docs/method.md#presets)."""

    backbone: str = "resnet50"  # one of BACKBONES or a timm CNN name (efficientnet_lite0)
    # imagenet (torchvision / timm weights; efficientnet_lite0-2 from their packages offline) |
    # none | generated (vwe pretrain) | /path/to/file.pth
    pretrained: str = "imagenet"
    frozen_bn: bool = True  # BN statistics fixed (affine trained); false: batch statistics,
    # for training from random initialisation
    freeze_stem: bool = True
    detach_after_stage2: bool = True  # stem..layer2 get no gradient (root, VWL-L)
    num_words: int = check(256, ge=1)  # k
    # softmax temperature on cosine similarities; authors: none (1)
    temperature: float = check(1.0, gt=0)
    detach_word_features: bool = True  # no gradient from the word encoder into the backbone
    # mean (paper) | sum (authors' code)
    word_histogram: str = check("mean", choices=("mean", "sum"))
    # hspp (paper) | gap (authors' code)
    word_logits_from: str = check("hspp", choices=("hspp", "gap"))
    codebook: str = check("learned", choices=("learned", "memory_bank"))  # learned | memory_bank
    memory_rho: float = check(1.0e-3, ge=0, le=1)  # EMA rate of the memory-bank codebook
    hspp_gamma: float = check(2.0, ge=0)
    hspp_levels: list[int] = check(factory=lambda: [1, 2, 4], each=True, ge=1)
    # adaptive (exact r×r cells) | floor_kernel (authors' pooling)
    hspp_cells: str = check("adaptive", choices=("adaptive", "floor_kernel"))
    # p_img from hspp (the paper) | gap (global average: Table 1's baseline and +VWE rows)
    pooling: str = check("hspp", choices=("hspp", "gap"))


@dataclass
class LossWeights:
    """Weights of the CAM losses (docs/method.md#losses)."""

    img: float = check(1.0, ge=0)
    word: float = check(1.0, ge=0)
    w2i: float = check(1.0, ge=0)
    decov: float = check(0.0, ge=0)
    entropy: float = check(0.0, ge=0)


@dataclass
class LoopSettings:
    """Keys every training stage has: the one training loop (engine/loop.py) reads them."""

    batch_size: int = check(16, ge=1)  # global batch, split across ranks
    checkpoint_every: int = check(500, ge=1)  # steps between last.pt saves; also at the end
    log_every: int = check(10, ge=1)  # steps between TensorBoard scalars
    amp: bool = False  # bfloat16 autocast (CPU and CUDA; docs/pipeline.md#precision)
    # the network's weights (so its activations) in channels_last, and torch.compile (inductor)
    # of the network: faster where measured (docs/performance.md#training-layouts), equal up
    # to float rounding, so off in the presets
    channels_last: bool = False
    compile: bool = False
    resume: bool = False  # continue from <run_dir>/<stage>/last.pt (`--resume`)
    stop_at_step: int = check(0, ge=0)  # >0: stop after this many steps with a resumable checkpoint


@dataclass
class TrainCamConfig(LoopSettings):
    """CAM training: the authors' augmentation and poly SGD."""

    epochs: int = check(6, ge=1)
    # 0: floor(N / batch_size) * epochs; >0 caps the run (smoke tests)
    max_steps: int = check(0, ge=0)
    # >0: exactly this many steps whatever the dataset's size (a recipe stated in steps; epochs
    # are then ignored); 0: from epochs
    steps: int = check(0, ge=0)
    lr: float = check(0.01, gt=0)  # backbone; new layers get lr * new_lr_mult
    new_lr_mult: float = check(10.0, gt=0)
    weight_decay: float = check(1.0e-4, ge=0)
    # The authors' runs used momentum 1e-4 (IRNet's PolyOptimizer passes weight decay where SGD
    # expects momentum); 0.9 is what the class name suggests.
    momentum: float = check(1.0e-4, ge=0, lt=1)
    poly_power: float = check(0.9, ge=0)
    crop_size: int = check(512, ge=16)
    resize_long: list[int] = check(factory=lambda: [320, 640], each=True, pair=True, ge=16)
    flip_prob: float = check(0.5, ge=0, le=1)
    losses: LossWeights = field(default_factory=LossWeights)


@dataclass
class CamConfig:
    """Multi-scale + flip CAM inference (docs/method.md#cam-inference)."""

    split: str = "train"
    checkpoint: str = ""  # empty: <run_dir>/train_cam/final.pt
    scales: list[float] = check(factory=lambda: [1.0, 0.5, 1.5, 2.0], each=True, gt=0)
    flip_fusion: str = check("max", choices=("max", "sum"))  # max (VWE) | sum (IRNet)
    fuse_word_cam: bool = True  # CAM = max(M_img, M_word) (paper) or M_img alone (code)
    high_res_resize: str = check("direct", choices=("direct", "irnet_crop"))  # direct | irnet_crop
    # also store the M_img / M_word parts (3x the bytes; eval-cam then scores each part)
    save_parts: bool = False
    # float16 halves the files again (docs/formats.md#cam-files gives its effect on mIoU)
    dtype: str = check("float32", choices=("float32", "float16"))
    amp: bool = False  # bfloat16 autocast of the network (docs/pipeline.md#precision)
    # consecutive images of one size per forward (same CAMs; keeps a GPU busy, halved while it
    # does not fit; docs/performance.md#make-cam)
    batch_images: int = check(1, ge=1)
    # an image whose long side is outside the trained train_cam.resize_long is scaled to its
    # nearest end first (docs/pipeline.md#trained-scale); false: every image at its own size
    trained_scale: bool = True


@dataclass
class EvalCamConfig:
    """CAM evaluation: fixed background score plus a sweep."""

    split: str = "train"
    # a number, or auto: chosen from the CAMs without masks (docs/method.md#auto-thresholds)
    bkg_score: Any = check(0.14, ge=0, le=1, auto=True)
    sweep: bool = True
    sweep_start: float = check(0.0, ge=0, le=1)
    sweep_stop: float = check(0.6, ge=0, le=1)
    sweep_step: float = check(0.01, gt=0, le=1)


@dataclass
class IrLabelConfig:
    """`vwe ir-labels`: confident CAM regions, two dense CRFs, over data.train_list
    (docs/refinement.md#ir-labels)."""

    # conf_fg_thres: CAM score above which a pixel is confident fg; auto: the CAMs' auto
    # background score + 0.15 (docs/method.md#auto-thresholds)
    fg_thres: Any = check(0.30, ge=0, le=1, auto=True)
    # conf_bg_thres: below it confident bg; between the two: ignore (255); auto: the 80 %
    # quantile of the CAM scores below that background score, at least 0.05
    bg_thres: Any = check(0.05, ge=0, le=1, auto=True)
    # CRF processes per rank (IRNet: cpu_count // 2); 0: in this process
    num_workers: int = check(2, ge=0)


@dataclass
class TrainIrnConfig(LoopSettings):
    """`vwe train-irn`: boundary + displacement branches on a frozen backbone
    (docs/refinement.md#irnet-training)."""

    backbone: str = ""  # empty: model.backbone (the CAM network's)
    # imagenet (torchvision weights, IRNet) | cam (the backbone of <run_dir>/train_cam/final.pt;
    # the CPU demo has no ImageNet weights) | /path/to/weights.pth
    backbone_init: str = "imagenet"
    with_displacement: bool = True  # the displacement branch only serves instance labels
    radius: int = check(10, ge=1)  # pair radius in training (train_irn.py:12); 5 at inference
    # irn_crop_size: random crop, also the mean-shift pass's crop
    crop_size: int = check(512, ge=16)
    # uniform scale jitter
    scale_range: list[float] = check(factory=lambda: [0.5, 1.5], each=True, pair=True,
                                     gt=0)
    flip_prob: float = check(0.5, ge=0, le=1)
    batch_size: int = check(32, ge=1)  # irn_batch_size, global batch split across ranks (drop_last)
    epochs: int = check(3, ge=1)  # irn_num_epoches
    # 0: floor(N / batch_size) * epochs; >0 caps the run (smoke tests)
    max_steps: int = check(0, ge=0)
    # >0: exactly this many steps whatever the dataset's size (a recipe stated in steps; epochs
    # are then ignored); 0: from epochs
    steps: int = check(0, ge=0)
    # edge branch; the displacement branch trains at 10 * lr (docs/refinement.md#network)
    lr: float = check(0.1, gt=0)
    weight_decay: float = check(1.0e-4, ge=0)
    # IRNet's PolyOptimizer passes weight decay where SGD expects momentum, so the released code
    # trains with momentum 1e-4 (docs/refinement.md#optimiser-quirk); 0.9 is one override away.
    momentum: float = check(1.0e-4, ge=0, lt=1)
    poly_power: float = check(0.9, ge=0)
    # infer_list of the displacement-mean pass (docs/refinement.md#displacement-mean)
    mean_shift_split: str = "train"
    checkpoint_every: int = check(100, ge=1)  # steps; also at every epoch end and at the end


@dataclass
class PseudoLabelConfig:
    """`vwe pseudo-labels`: random walk of the CAMs over IRNet's affinities
    (docs/refinement.md#random-walk)."""

    split: str = "train"  # infer_list: train to score the labels, train_aug for DeepLab
    checkpoint: str = ""  # empty: <run_dir>/train_irn/final.pt
    radius: int = check(5, ge=2)  # pair radius at inference (make_sem_seg_labels.py:41)
    beta: float = check(10.0, gt=0)  # T = D^-1 A^beta
    exp_times: int = check(8, ge=0, le=16)  # the walk is T^(2^exp_times) = T^256
    # What bg_thres is compared with (docs/refinement.md#walked-background-plane). max: IRNet's
    # walk maps divided by their global maximum, bg_thres their sem_seg_bg_thres; auto: plain
    # Otsu over those maps. plane: each walked CAM divided by the walked plane of ones, on the
    # CAM's scale, bg_thres a CAM background score; auto: the CAM background score's rule
    scale: str = check("max", choices=("max", "plane"))
    # the background threshold (see scale); auto is chosen once every walk exists
    # (docs/method.md#auto-thresholds)
    bg_thres: Any = check(0.25, ge=0, le=1, auto=True)
    # with scale=plane and bg_thres=auto: one background score per class, the auto score scaled
    # by the class's mean CAM score (docs/method.md#class-background-scores)
    class_thresholds: bool = False
    # sparse (same result, seconds) | dense (IRNet's (hw)^2 matrix)
    method: str = check("sparse", choices=("sparse", "dense"))
    # zero-pad images right/bottom to at least this (IRNet: 512); 0: to /16
    pad_size: int = check(512, ge=0)
    # stored walk (<run_dir>/walks); labels are made from it
    walk_dtype: str = check("float16", choices=("float16", "float32"))
    amp: bool = False  # bfloat16 autocast of the boundary network (docs/pipeline.md#precision)


@dataclass
class EvalLabelsConfig:
    """`vwe eval-labels`: mIoU of a folder of label PNGs, plus a bg sweep on stored walks."""

    split: str = "train"  # chainer_eval_set
    label_dir: str = ""  # empty: <run_dir>/pseudo_labels; 255 in a label counts as background
    sweep: bool = True  # with <run_dir>/walks present, sweep pseudo_labels.bg_thres
    sweep_start: float = check(0.0, ge=0, le=1)
    sweep_stop: float = check(0.6, ge=0, le=1)
    sweep_step: float = check(0.01, gt=0, le=1)


@dataclass
class SegConfig:
    """DeepLabV2 and its labels, shared by train-seg / infer-seg (docs/segmentation.md#deeplabv2,
    docs/segmentation.md#config-defaults)."""

    # blocks [3, 4, 23, 3]; resnet_tiny for the CPU demo
    backbone: str = "resnet101"  # one of BACKBONES or a timm CNN name
    # torchvision (weights API) | caffe (KZ-converted local file)
    layout: str = check("torchvision", choices=("torchvision", "caffe"))
    pretrained: str = "imagenet"  # imagenet | none | /path/to/file.pth (coco: a converted file)
    # BN statistics fixed, affine not optimised (docs/segmentation.md#batch-norm); false: batch
    # statistics, for training from random initialisation (the CPU demo)
    frozen_bn: bool = True
    freeze_stem: bool = False  # true: conv1 + bn1 get no gradient (IRN, irn#21)
    # 8 (DeepLabV2) | 16: no dilation in the third stage, ASPP rates halved; ~4x faster
    # training of a timm trunk on a CPU (docs/segmentation.md#output-stride-16)
    output_stride: int = check(8, choices=(8, 16))
    # + max; [] disables. At least 1/8: a smaller scale leaves a crop or a small image 0 pixels
    msc_scales: list[float] = check(factory=lambda: [0.5, 0.75], each=True, ge=0.125, le=4,
                                    nonempty=False)
    label_dir: str = ""  # training label PNGs (ids 0..C, 255 ignored); empty: <run>/pseudo_labels
    ignore_index: int = 255  # label value left out of the loss


@dataclass
class TrainSegConfig(LoopSettings):
    """`vwe train-seg`: DeepLabV2 on a folder of label PNGs (docs/segmentation.md#deeplabv2,
    docs/segmentation.md#config-defaults).

    `recipe` picks the optimiser/loss bundle; the keys left at null take the recipe's value.
    deeplab (KZ): lr 2.5e-4, ASPP weight 10×/bias 20×, poly every 10 it, sum of 4 MSC losses.
    vwe_author (RL): lr 1e-3, every conv weight 1×, ASPP bias frozen, poly every it, mean of 4.
    """

    # deeplab | vwe_author (also written vwe-author)
    recipe: str = "deeplab"
    train_list: str = "train_aug"  # 10,582 images on VOC
    iterations: int = check(20000, ge=1)  # SGD updates (AdvCAM: 30,000; COCO: 100,000)
    # global batch per update, split across ranks and accumulation steps
    batch_size: int = check(10, ge=1)
    # micro-batches per update (KZ: 5 × 2); the loss is the global batch's
    accumulation: int = check(1, ge=1)
    crop_size: int = check(321, ge=16)
    # discrete
    scales: list[float] = check(factory=lambda: [0.5, 0.75, 1.0, 1.25, 1.5], each=True, gt=0)
    flip_prob: float = check(0.5, ge=0, le=1)  # horizontal flip after the crop (KZ)
    loss: str = check("ce", choices=("ce", "balanced_ce"))  # ce | balanced_ce (CL, AdvCAM#9)
    # output: labels resized to the logits (KZ, RL) | input: logits upsampled bilinearly to the
    # crop, every label pixel scored (docs/segmentation.md#loss-resolution)
    loss_at: str = check("output", choices=("output", "input"))
    # null: recipe (deeplab 2.5e-4, vwe_author 1e-3)
    lr: float | None = check(None, gt=0, optional=True)
    # null: recipe (5e-4); ASPP biases never decayed
    weight_decay: float | None = check(None, ge=0, optional=True)
    momentum: float | None = check(None, ge=0, lt=1, optional=True)  # null: recipe (0.9)
    poly_power: float | None = check(None, ge=0, optional=True)  # null: recipe (0.9)
    # null: recipe (deeplab 10, vwe_author 1)
    poly_update_every: int | None = check(None, ge=1, optional=True)
    checkpoint_every: int = check(1000, ge=1)  # steps; also at the end
    log_every: int = check(20, ge=1)  # steps between TensorBoard scalars


@dataclass
class CrfConfig:
    """Dense CRF on the segmentation probabilities (docs/segmentation.md#dense-crf; KZ/RL/CL
    values)."""

    enabled: bool = True  # reported numbers include it
    iterations: int = check(10, ge=0)
    pos_w: float = check(3.0, ge=0)  # Gaussian kernel compat
    pos_xy_std: float = check(1.0, gt=0)
    bi_w: float = check(4.0, ge=0)  # bilateral kernel compat
    bi_xy_std: float = check(67.0, gt=0)
    bi_rgb_std: float = check(3.0, gt=0)
    # raw (RGB uint8) | kz_quirk (mean-subtracted BGR wrapped to uint8)
    image: str = check("raw", choices=("raw", "kz_quirk"))
    workers: int = check(2, ge=0)  # CPU worker processes per rank; 0: in the main process


@dataclass
class InferSegConfig:
    """`vwe infer-seg`: whole-image inference, optional outer scales + flip, CRF
    (docs/segmentation.md#inference)."""

    split: str = "val"
    checkpoint: str = ""  # empty: <run_dir>/train_seg/final.pt
    msc: bool = True  # the model's own MSC (1, 0.5, 0.75) + max inside each outer scale
    # outer scales; ToCo 1, 1.25, 1.5
    scales: list[float] = check(factory=lambda: [1.0], each=True, gt=0)
    flip: bool = False  # also the mirrored image at every outer scale
    # an image outside the long sides DeepLab trained at (its checkpoint says) is scaled into
    # them first (docs/pipeline.md#trained-scale); false: every image at its own size
    trained_scale: bool = True
    # sum (irn#26, ToCo) | max | mean: an image's logits and its twin's
    flip_fusion: str = check("sum", choices=("sum", "max", "mean"))
    # max (ToCo) | sum | mean over outer scales, at full size
    scale_fusion: str = check("max", choices=("sum", "max", "mean"))
    out_dir: str = ""  # empty: <run_dir>/seg/<split>; PNGs under raw/ and crf/
    amp: bool = False  # bfloat16 autocast of the network (docs/pipeline.md#precision)
    crf: CrfConfig = field(default_factory=CrfConfig)


@dataclass
class EvalSegConfig:
    """`vwe eval-seg`: per-class IoU of the raw and CRF predictions
    (docs/segmentation.md#metrics)."""

    split: str = "val"
    pred_dir: str = ""  # empty: <run_dir>/seg/<split> (holding raw/ and/or crf/)


@dataclass
class ExportConfig:
    """`vwe export-voc-test`: the test-server archive
    (docs/segmentation.md#test-server-submission)."""

    split: str = "test"  # 1,456 images on VOC
    pred_dir: str = ""  # empty: <run_dir>/seg/<split>
    variant: str = check("crf", choices=("crf", "raw"))  # crf | raw: which predictions to submit
    # comp6 (any training data, incl. ImageNet/SBD) | comp5
    competition: str = check("comp6", choices=("comp6", "comp5"))
    archive: str = ""  # empty: <run_dir>/voc_test_results.tar.gz


@dataclass
class PipelineConfig:
    """`vwe run`: the whole pipeline in one run directory."""

    from_stage: str = ""  # `--from STAGE`: rerun this stage and every later one
    # after eval-seg: the same DeepLab on the true masks (<run_dir>/supervised) when every
    # training image has one, for the fully supervised bound and weak / full
    supervised: bool = True


@dataclass
class ImportWeightsConfig:
    """`vwe import-weights`: the authors' released checkpoints into this project's format."""

    # ijcai-code | vwl-l | vwl-m | deeplab-caffe
    format: str = check("ijcai-code", choices=("ijcai-code", "vwl-l", "vwl-m", "deeplab-caffe"))
    src: str = ""
    dst: str = ""


@dataclass
class PredictConfig:
    """`vwe predict CHECKPOINT INPUT… --out DIR`: a trained DeepLab or CAM network on new images
    (docs/segmentation.md#predict). The network, classes and input normalisation come from the
    checkpoint; CRF settings from infer_seg.crf, CAM fusion settings from cam.*."""

    checkpoint: str = ""  # train_seg/final.pt (DeepLab) or train_cam/final.pt (CAM network)
    inputs: list[str] = field(default_factory=list)  # images, folders or glob patterns
    out: str = ""  # masks/, overlays/, probs/ and the run's record.json go here
    scales: list[float] = check(factory=lambda: [1.0], each=True, gt=0)  # outer scales
    flip: bool = False  # DeepLab: also the mirrored image (CAMs always use the mirror)
    flip_fusion: str = check("sum", choices=("sum", "max", "mean"))  # DeepLab
    scale_fusion: str = check("max", choices=("sum", "max", "mean"))  # DeepLab
    msc: bool = True  # DeepLab: the model's own MSC scales, as at training
    # scale an image outside the long sides the network trained at into them first, as make-cam
    # and infer-seg do (docs/pipeline.md#trained-scale)
    trained_scale: bool = True
    crf: bool = False  # dense CRF on the probabilities (parameters: infer_seg.crf.*)
    batch_size: int = check(1, ge=1)  # DeepLab: images of one size per forward
    overlay: bool = True  # overlays/<name>.png: image + mask colours + legend
    alpha: float = check(0.5, ge=0, le=1)  # overlay opacity of the mask colours
    probs: bool = False  # probs/<name>.npz: per-class probabilities (float32, never pickled)
    # CAM: the background plane's score; auto: Otsu over the inputs' CAMs (no masks)
    bkg_score: Any = check(0.14, ge=0, le=1, auto=True)
    class_threshold: float = check(0.5, gt=0, lt=1)  # CAM: sigmoid score for a class present
    tags: str = ""  # CAM: optional CSV/JSON tags file: each image's classes, not the classifier's
    amp: bool = False  # bfloat16 autocast of the network (docs/pipeline.md#precision)


@dataclass
class ExportModelConfig:
    """`vwe export CHECKPOINT --format F OUT`: the trained DeepLab as one file that runs without
    vwe (docs/segmentation.md#exported-models)."""

    checkpoint: str = ""  # a train-seg checkpoint (e.g. <run_dir>/train_seg/final.pt)
    format: str = check("onnx", choices=("onnx", "torchscript"))  # onnx | torchscript
    out: str = ""  # the file to write; its sidecar is OUT.json
    opset: int = check(18, ge=18)  # ONNX opset (the torch.export-based exporter needs >= 18)
    msc: bool = True  # the model's own MSC scales, as the checkpoint records them, + max


@dataclass
class AblateConfig:
    """`vwe ablate`: Table 1's rows, each a run of its own, over seeds
    (docs/method.md#ablations)."""

    seeds: int = check(3, ge=1)  # seeds 1..N per row
    # the last stage each row runs: eval-cam (CAMs only) | eval-labels (through pseudo labels) |
    # eval-seg (through the DeepLab, without and with CRF)
    through: str = check("eval-cam", choices=("eval-cam", "eval-labels", "eval-seg"))
    # which rows; empty: all of ablate.ROWS
    rows: list[str] = field(default_factory=list)
    temperature: float = check(0.05, gt=0)  # the "+ temperature" row's model.temperature


@dataclass
class SweepConfig:
    """`vwe sweep KEY=V1,V2,…`: one config key over values, each a run over seeds
    (docs/method.md#ablations)."""

    key: str = ""  # a dotted config key, e.g. model.num_words
    values: list[Any] = field(default_factory=list)
    seeds: int = check(3, ge=1)
    through: str = check("eval-cam", choices=("eval-cam", "eval-labels", "eval-seg"))


@dataclass
class CodebookConfig:
    """`vwe codebook`: the Fig. 5 gallery and word usage / purity of a trained CAM network
    (docs/method.md#codebook-gallery; the network: cam.checkpoint or train_cam/final.pt)."""

    split: str = "train"
    words: int = check(16, ge=1)  # the most used words shown
    patches: int = check(8, ge=1)  # crops per word, highest P first
    patch_size: int = check(48, ge=8)  # crop side in pixels around a stride-16 position
    max_images: int = check(0, ge=0)  # 0: every image of the split


@dataclass
class PretrainConfig(LoopSettings):
    """`vwe pretrain`: model.backbone trained on the generated classification task, the offline
    stand-in for ImageNet (docs/synthetic.md#pretraining). `generated` in model.pretrained,
    train_irn.backbone_init or seg.pretrained names its result, cached under `cache_dir` (the
    user's cache by default, never the working directory) by a digest of these keys, so every
    run and seed with the same keys shares one backbone."""

    num_classes: int = check(96, ge=2, le=384)  # (shape, texture, hue) triples
    image_size: int = check(96, ge=32)
    steps: int = check(1500, ge=1)
    batch_size: int = check(64, ge=1)
    lr: float = check(0.1, gt=0)
    momentum: float = check(0.9, ge=0, lt=1)
    weight_decay: float = check(5.0e-4, ge=0)
    poly_power: float = check(0.9, ge=0)
    val_images: int = check(960, ge=0)  # held-out images for the accuracy in pretrain.json
    seed: int = 0  # the task's and the training's, apart from the run's seed
    cache_dir: str = ""  # "": the user's cache, $XDG_CACHE_HOME/vwe/pretrained or ~/.cache/…
    checkpoint_every: int = check(250, ge=1)
    # loader processes drawing the images beside the network (0: in the main process); the
    # images are the same either way
    num_workers: int = check(1, ge=0)


@dataclass
class Config:
    """Everything one run needs; saved resolved into the run directory."""

    # paper | ijcai-code | vwl-l | vwl-m
    preset: str = check("paper", choices=("paper", "ijcai-code", "vwl-l", "vwl-m"))
    run_dir: str = "runs/voc_cam_r50"
    device: str = check("auto", choices=("auto", "cpu", "cuda"))  # auto | cpu | cuda
    seed: int = 1
    # An output folder made with other settings: never (stop with the differing keys) |
    # changed (recompute it: `--overwrite`, `vwe run`) | always (recompute even if equal: --from)
    overwrite: str = check("never", choices=("never", "changed", "always"))
    data: DataConfig = field(default_factory=DataConfig)
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train_cam: TrainCamConfig = field(default_factory=TrainCamConfig)
    cam: CamConfig = field(default_factory=CamConfig)
    eval_cam: EvalCamConfig = field(default_factory=EvalCamConfig)
    ir_labels: IrLabelConfig = field(default_factory=IrLabelConfig)
    train_irn: TrainIrnConfig = field(default_factory=TrainIrnConfig)
    pseudo_labels: PseudoLabelConfig = field(default_factory=PseudoLabelConfig)
    eval_labels: EvalLabelsConfig = field(default_factory=EvalLabelsConfig)
    import_weights: ImportWeightsConfig = field(default_factory=ImportWeightsConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    seg: SegConfig = field(default_factory=SegConfig)
    train_seg: TrainSegConfig = field(default_factory=TrainSegConfig)
    infer_seg: InferSegConfig = field(default_factory=InferSegConfig)
    eval_seg: EvalSegConfig = field(default_factory=EvalSegConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    predict: PredictConfig = field(default_factory=PredictConfig)
    ablate: AblateConfig = field(default_factory=AblateConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)
    codebook: CodebookConfig = field(default_factory=CodebookConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    export_model: ExportModelConfig = field(default_factory=ExportModelConfig)
