"""The config schema: one typed dataclass per stage, defaults equal to the paper's VOC settings.

Every key a YAML file or a `key=value` override may set is a field here; the loader
(`config/loader.py`) refuses any other. Training sections derive from `LoopSettings`, the keys the
one training loop reads.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class DataConfig:
    """Where the dataset lies (VOC 2012 + SBD layout) and how it is read."""

    root: str = "data/synthetic"
    train_list: str = "train_aug"  # CAM and IRN training split
    mask_dir: str = "SegmentationClassAug"  # falls back to SegmentationClass when absent
    num_workers: int = 2  # DataLoader worker processes per rank
    sbd_root: str = ""  # SBD 'dataset' folder (train.txt, val.txt) for `vwe prepare-voc`


@dataclass
class SyntheticConfig:
    """The generated dataset of docs/synthetic.md (written in VOC layout)."""

    size: str = "default"  # default | tiny: the split sizes and image sizes below are scaled
    num_classes: int = 8
    num_train_aug: int = 2000
    num_train: int = 300
    num_val: int = 300
    num_test: int = 100
    min_side: int = 96
    max_side: int = 160
    part_fraction: float = 0.3  # side of the discriminative part relative to the object
    context_prob: float = 0.8  # chance that a context class sits on its own background texture
    max_instances: int = 4
    full_frame_prob: float = 0.05  # images with one object filling most of the frame
    jpeg_quality: int = 85
    noise_std: float = 4.0
    blur_prob: float = 0.3
    seed: int = 0


@dataclass
class ModelConfig:
    """The CAM network: backbone, Visual Words Encoder, HSPP (docs/method.md#presets)."""

    backbone: str = "resnet50"  # resnet18 | resnet34 | resnet50 | resnet101 | resnet_tiny
    pretrained: str = "imagenet"  # imagenet (torchvision weights API) | none | /path/to/file.pth
    frozen_bn: bool = True  # BN statistics fixed (affine trained); false: batch statistics,
    # for training from random initialisation
    freeze_stem: bool = True
    detach_after_stage2: bool = True  # stem..layer2 get no gradient (root, VWL-L)
    num_words: int = 256  # k
    temperature: float = 1.0  # softmax temperature on cosine similarities; authors: none (1)
    detach_word_features: bool = True  # no gradient from the word encoder into the backbone
    word_histogram: str = "mean"  # mean (paper) | sum (authors' code)
    word_logits_from: str = "hspp"  # hspp (paper) | gap (authors' code)
    codebook: str = "learned"  # learned | memory_bank
    memory_rho: float = 1.0e-3  # EMA rate of the memory-bank codebook
    hspp_gamma: float = 2.0
    hspp_levels: list[int] = field(default_factory=lambda: [1, 2, 4])
    hspp_cells: str = "adaptive"  # adaptive (exact r×r cells) | floor_kernel (authors' pooling)


@dataclass
class LossWeights:
    """Weights of the CAM losses (docs/method.md#losses)."""

    img: float = 1.0
    word: float = 1.0
    w2i: float = 1.0
    decov: float = 0.0
    entropy: float = 0.0


@dataclass
class LoopSettings:
    """Keys every training stage has: the one training loop (engine/loop.py) reads them."""

    batch_size: int = 16  # global batch, split across ranks
    checkpoint_every: int = 500  # steps between last.pt saves; also at the end
    log_every: int = 10  # steps between TensorBoard scalars
    amp: bool = False  # bfloat16 autocast on CUDA only
    resume: bool = False  # continue from <run_dir>/<stage>/last.pt (`--resume`)
    stop_at_step: int = 0  # >0: stop after this many steps with a resumable checkpoint


@dataclass
class TrainCamConfig(LoopSettings):
    """CAM training: the authors' augmentation and poly SGD."""

    epochs: int = 6
    max_steps: int = 0  # 0: floor(N / batch_size) * epochs; >0 caps the run (smoke tests)
    batch_size: int = 16  # global batch, split across ranks
    lr: float = 0.01  # backbone; new layers get lr * new_lr_mult
    new_lr_mult: float = 10.0
    weight_decay: float = 1.0e-4
    # The authors' runs used momentum 1e-4 (IRNet's PolyOptimizer passes weight decay where SGD
    # expects momentum); 0.9 is what the class name suggests.
    momentum: float = 1.0e-4
    poly_power: float = 0.9
    crop_size: int = 512
    resize_long: list[int] = field(default_factory=lambda: [320, 640])
    flip_prob: float = 0.5
    checkpoint_every: int = 500  # steps; also at every epoch end and at the end
    log_every: int = 10  # steps between TensorBoard scalars
    amp: bool = False  # bfloat16 autocast on CUDA only
    losses: LossWeights = field(default_factory=LossWeights)
    resume: bool = False  # continue from <run_dir>/train_cam/last.pt (`--resume`)
    stop_at_step: int = 0  # >0: stop after this many steps with a resumable checkpoint


@dataclass
class CamConfig:
    """Multi-scale + flip CAM inference (docs/method.md#cam-inference)."""

    split: str = "train"
    checkpoint: str = ""  # empty: <run_dir>/train_cam/final.pt
    scales: list[float] = field(default_factory=lambda: [1.0, 0.5, 1.5, 2.0])
    flip_fusion: str = "max"  # max (VWE) | sum (IRNet)
    fuse_word_cam: bool = True  # CAM = max(M_img, M_word) (paper) or M_img alone (code)
    high_res_resize: str = "direct"  # direct | irnet_crop


@dataclass
class EvalCamConfig:
    """CAM evaluation: fixed background score plus a sweep."""

    split: str = "train"
    bkg_score: float = 0.14
    sweep: bool = True
    sweep_start: float = 0.0
    sweep_stop: float = 0.6
    sweep_step: float = 0.01


@dataclass
class IrLabelConfig:
    """`vwe ir-labels`: confident CAM regions, two dense CRFs, over data.train_list
    (docs/refinement.md#ir-labels)."""

    fg_thres: float = 0.30  # conf_fg_thres: CAM score above which a pixel is confident fg
    bg_thres: float = 0.05  # conf_bg_thres: below it confident bg; between the two: ignore (255)
    num_workers: int = 2  # CRF processes per rank (IRNet: cpu_count // 2); 0: in this process


@dataclass
class TrainIrnConfig(LoopSettings):
    """`vwe train-irn`: boundary + displacement branches on a frozen backbone
    (docs/refinement.md#irnet-training)."""

    backbone: str = ""  # empty: model.backbone (the CAM network's)
    # imagenet (torchvision weights, IRNet) | cam (the backbone of <run_dir>/train_cam/final.pt;
    # the CPU demo has no ImageNet weights) | /path/to/weights.pth
    backbone_init: str = "imagenet"
    with_displacement: bool = True  # the displacement branch only serves instance labels
    radius: int = 10  # pair radius in training (train_irn.py:12); 5 at inference
    crop_size: int = 512  # irn_crop_size: random crop, also the mean-shift pass's crop
    scale_range: list[float] = field(default_factory=lambda: [0.5, 1.5])  # uniform scale jitter
    flip_prob: float = 0.5
    batch_size: int = 32  # irn_batch_size, global batch split across ranks (drop_last)
    epochs: int = 3  # irn_num_epoches
    max_steps: int = 0  # 0: floor(N / batch_size) * epochs; >0 caps the run (smoke tests)
    # edge branch; the displacement branch trains at 10 * lr (docs/refinement.md#network)
    lr: float = 0.1
    weight_decay: float = 1.0e-4
    # IRNet's PolyOptimizer passes weight decay where SGD expects momentum, so the released code
    # trains with momentum 1e-4 (docs/refinement.md#optimiser-quirk); 0.9 is one override away.
    momentum: float = 1.0e-4
    poly_power: float = 0.9
    # infer_list of the displacement-mean pass (docs/refinement.md#displacement-mean)
    mean_shift_split: str = "train"
    checkpoint_every: int = 100  # steps; also at every epoch end and at the end
    log_every: int = 10  # steps between TensorBoard scalars
    amp: bool = False  # bfloat16 autocast on CUDA only
    resume: bool = False  # continue from <run_dir>/train_irn/last.pt (`--resume`)
    stop_at_step: int = 0  # >0: stop after this many steps with a resumable checkpoint


@dataclass
class PseudoLabelConfig:
    """`vwe pseudo-labels`: random walk of the CAMs over IRNet's affinities
    (docs/refinement.md#random-walk)."""

    split: str = "train"  # infer_list: train to score the labels, train_aug for DeepLab
    checkpoint: str = ""  # empty: <run_dir>/train_irn/final.pt
    radius: int = 5  # pair radius at inference (make_sem_seg_labels.py:41)
    beta: float = 10.0  # T = D^-1 A^beta
    exp_times: int = 8  # the walk is T^(2^exp_times) = T^256
    bg_thres: float = 0.25  # sem_seg_bg_thres: constant background plane on the walk maps
    method: str = "sparse"  # sparse (same result, seconds) | dense (IRNet's (hw)^2 matrix)
    pad_size: int = 512  # zero-pad images right/bottom to at least this (IRNet: 512); 0: to /16
    walk_dtype: str = "float16"  # stored walk (<run_dir>/walks); labels are made from it


@dataclass
class EvalLabelsConfig:
    """`vwe eval-labels`: mIoU of a folder of label PNGs, plus a bg sweep on stored walks."""

    split: str = "train"  # chainer_eval_set
    label_dir: str = ""  # empty: <run_dir>/pseudo_labels; 255 in a label counts as background
    sweep: bool = True  # with <run_dir>/walks present, sweep pseudo_labels.bg_thres
    sweep_start: float = 0.0
    sweep_stop: float = 0.6
    sweep_step: float = 0.01


@dataclass
class SegConfig:
    """DeepLabV2 and its labels, shared by train-seg / infer-seg (docs/segmentation.md#deeplabv2,
    docs/segmentation.md#config-defaults)."""

    backbone: str = "resnet101"  # blocks [3, 4, 23, 3]; resnet_tiny for the CPU demo
    layout: str = "torchvision"  # torchvision (weights API) | caffe (KZ-converted local file)
    pretrained: str = "imagenet"  # imagenet | none | /path/to/file.pth (coco: a converted file)
    # BN statistics fixed, affine not optimised (docs/segmentation.md#batch-norm); false: batch
    # statistics, for training from random initialisation (the CPU demo)
    frozen_bn: bool = True
    freeze_stem: bool = False  # true: conv1 + bn1 get no gradient (IRN, irn#21)
    msc_scales: list[float] = field(default_factory=lambda: [0.5, 0.75])  # + max; [] disables
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

    recipe: str = "deeplab"  # deeplab | vwe_author (also written vwe-author)
    train_list: str = "train_aug"  # 10,582 images on VOC
    iterations: int = 20000  # SGD updates (AdvCAM: 30,000; COCO: 100,000)
    batch_size: int = 10  # global batch per update, split across ranks and accumulation steps
    accumulation: int = 1  # micro-batches per update (KZ: 5 × 2); the loss is the global batch's
    crop_size: int = 321
    scales: list[float] = field(default_factory=lambda: [0.5, 0.75, 1.0, 1.25, 1.5])  # discrete
    flip_prob: float = 0.5  # horizontal flip after the crop (KZ)
    loss: str = "ce"  # ce | balanced_ce (CL, AdvCAM#9)
    lr: float | None = None  # null: recipe (deeplab 2.5e-4, vwe_author 1e-3)
    weight_decay: float | None = None  # null: recipe (5e-4); ASPP biases never decayed
    momentum: float | None = None  # null: recipe (0.9)
    poly_power: float | None = None  # null: recipe (0.9)
    poly_update_every: int | None = None  # null: recipe (deeplab 10, vwe_author 1)
    checkpoint_every: int = 1000  # steps; also at the end
    log_every: int = 20  # steps between TensorBoard scalars
    amp: bool = False  # bfloat16 autocast on CUDA only
    resume: bool = False  # continue from <run_dir>/train_seg/last.pt (`--resume`)
    stop_at_step: int = 0  # >0: stop after this many steps with a resumable checkpoint


@dataclass
class CrfConfig:
    """Dense CRF on the segmentation probabilities (docs/segmentation.md#dense-crf; KZ/RL/CL
    values)."""

    enabled: bool = True  # reported numbers include it
    iterations: int = 10
    pos_w: float = 3.0  # Gaussian kernel compat
    pos_xy_std: float = 1.0
    bi_w: float = 4.0  # bilateral kernel compat
    bi_xy_std: float = 67.0
    bi_rgb_std: float = 3.0
    image: str = "raw"  # raw (RGB uint8) | kz_quirk (mean-subtracted BGR wrapped to uint8)
    workers: int = 2  # CPU worker processes per rank; 0: in the main process


@dataclass
class InferSegConfig:
    """`vwe infer-seg`: whole-image inference, optional outer scales + flip, CRF
    (docs/segmentation.md#inference)."""

    split: str = "val"
    checkpoint: str = ""  # empty: <run_dir>/train_seg/final.pt
    msc: bool = True  # the model's own MSC (1, 0.5, 0.75) + max inside each outer scale
    scales: list[float] = field(default_factory=lambda: [1.0])  # outer scales; ToCo 1, 1.25, 1.5
    flip: bool = False  # also the mirrored image at every outer scale
    flip_fusion: str = "sum"  # sum (irn#26, ToCo) | max | mean: an image's logits and its twin's
    scale_fusion: str = "max"  # max (ToCo) | sum | mean over outer scales, at full size
    out_dir: str = ""  # empty: <run_dir>/seg/<split>; PNGs under raw/ and crf/
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
    variant: str = "crf"  # crf | raw: which predictions to submit
    competition: str = "comp6"  # comp6 (any training data, incl. ImageNet/SBD) | comp5
    archive: str = ""  # empty: <run_dir>/voc_test_results.tar.gz


@dataclass
class PipelineConfig:
    """`vwe run`: the whole pipeline in one run directory."""

    from_stage: str = ""  # `--from STAGE`: rerun this stage and every later one


@dataclass
class ImportWeightsConfig:
    """`vwe import-weights`: the authors' released checkpoints into this project's format."""

    format: str = "ijcai-code"  # ijcai-code | vwl-l | vwl-m | deeplab-caffe
    src: str = ""
    dst: str = ""


@dataclass
class Config:
    """Everything one run needs; saved resolved into the run directory."""

    preset: str = "paper"  # paper | ijcai-code | vwl-l | vwl-m
    run_dir: str = "runs/voc_cam_r50"
    device: str = "auto"  # auto | cpu | cuda
    seed: int = 1
    # An output folder made with other settings: never (stop with the differing keys) |
    # changed (recompute it: `--overwrite`, `vwe run`) | always (recompute even if equal: --from)
    overwrite: str = "never"
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
