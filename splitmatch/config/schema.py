"""The experiment configuration's schema: one dataclass per section, each field with its rule.

Every field is declared with :func:`~splitmatch.config.rules.setting`: its default, then the rule
its value must follow (a range, a choice, a flag...), then a comment saying what it means. The
rules are checked by :meth:`ExperimentConfig.validate` whenever a config is built (preset, YAML
file, ``--set`` overrides, a checkpoint's record). docs/method.md maps the paper's symbols to
these keys; docs/configuration.md describes how a config is resolved.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from splitmatch.config.rules import (
    MAX_COUNT,
    MAX_SIDE,
    MAX_WIDTH,
    NON_NEGATIVE,
    POSITIVE,
    PROBABILITY,
    SIDE,
    WEIGHT,
    Choice,
    Either,
    Flag,
    Items,
    Names,
    OrNull,
    Range,
    Text,
    TextMap,
    check_config,
    setting,
)
from splitmatch.config.templates import TemplateChoice


@dataclass
class ClipConfig:
    arch: str = setting("ViT-B-16-quickgelu", Text())  # open_clip model config name, or a path to a model-config JSON
    # A file (.safetensors, open_clip .pt/.bin, OpenAI's TorchScript .pt), "packaged:NAME" for
    # weights shipped inside splitmatch (packaged:world-clip), or an open_clip pretrained tag.
    weights: str | None = setting(None, Text(optional=True))
    # N_p deep visual prompt tokens per layer (0 disables prompts)
    prompt_tokens: int = setting(10, Range(0, MAX_COUNT, note="0 disables prompts"))
    prompt_layers: int = setting(11, Range(0, MAX_COUNT))  # L_p: prompts are inserted at each of the first L_p layers
    # ViT blocks fed to the decoder
    decoder_layers: list[int] = setting([5, 8, 11], Items(Range(0, MAX_COUNT), min_len=0, distinct=True))
    # masked-CLS region embeddings attend inside their mask in the last n blocks
    region_layers: int = setting(3, Range(1, MAX_COUNT))
    # Text prompts, a class embedding being the normalised mean over them: a shipped set ("single":
    # "a photo of a {}."; "ensemble": CLIP's 80 ImageNet templates; "zegclip-multi": the 15 of
    # ZegCLIP's COCO-Stuff recipe; "zegclip-single": its VOC one, "a photo of a {}") or a path to a
    # .json list of templates (splitmatch/configs/templates/ names each set's source).
    templates: str = setting("single", TemplateChoice())
    # How the 14 x 14 (ViT-B/16 at 224) positional embedding is resized to the input's patch grid:
    # "bicubic" (mmseg, align_corners false), "bilinear" (ZegCLIP: align_corners false, no
    # antialias) or "bicubic_antialias" (open_clip). Identity at the native grid (docs/method.md).
    pos_interpolation: str = setting("bicubic", Choice(("bicubic", "bilinear", "bicubic_antialias")))


@dataclass
class DecoderConfig:
    hidden_dim: int = setting(256, Range(1, MAX_WIDTH))  # d, width of pixel features and queries
    num_layers: int = setting(6, Range(1, MAX_COUNT))  # L transformer decoder layers
    num_heads: int = setting(8, Range(1, MAX_WIDTH))
    ffn_dim: int = setting(1024, Range(1, MAX_WIDTH))
    num_seen_queries: int = setting(100, Range(1, MAX_COUNT))  # N_s, matched to annotated seen-class masks
    # N_c, matched to pseudo masks of unannotated regions (split only)
    num_candidate_queries: int = setting(20, Range(0, MAX_COUNT))
    mfe: bool = setting(True, Flag())  # Multi-scale Feature Enhancement on the pixel features
    # r in F' = F + sum_r Up(phi(Pool_r F))
    mfe_pool_factors: list[int] = setting([1, 2, 4], Items(Range(1, MAX_SIDE), distinct=True))
    fuse_intermediate: bool = setting(True, Flag())  # add projected intermediate ViT layers to the pixel features
    masked_attention: bool = setting(True, Flag())  # Mask2Former masked cross-attention
    # learned upsampling of pixel features before mask prediction (1, 2 or 4)
    mask_upsample: int = setting(1, Choice((1, 2, 4)))
    logit_temperature: float = setting(0.07, POSITIVE)  # tau in cos(z, t_c) / tau
    # candidates get their own projection into CLIP space (chosen here)
    group_embed_heads: bool = setting(False, Flag())


# What pseudo.dense_features takes: the value path, the output tokens, or a recipe of
# splitmatch.clip.dense_recipes (but "value-path", which is "value").
PSEUDO_FEATURES = ("value", "tokens", "maskclip", "clearclip", "sclip", "naclip", "scclip")


@dataclass
class PseudoMaskConfig:
    # Which dense features the K-Means clusters: "value" (the value path of the last block, no residual
    # or feed-forward: the value-path recipe's), "tokens" (CLIP's output tokens), or a training-free
    # recipe's last block: "maskclip", "clearclip", "sclip", "naclip", "scclip" (docs/training-free.md).
    dense_features: str = setting("value", Choice(PSEUDO_FEATURES))
    input_size: int = setting(512, SIDE)  # frozen-CLIP input side for pseudo masks
    # How an image becomes the input_size x input_size CLIP input: "square" squashes it (the aspect
    # ratio is lost); "keep_aspect" resizes its long side to input_size (the short side to whole
    # patches) and pads, clusters only the image's patches, and stretches the index map over the
    # cached grid so that it maps back onto the image (docs/pseudo-masks.md).
    resize: str = setting("square", Choice(("square", "keep_aspect")))
    window_sizes: list[int] = setting([4, 8, 16], Items(Range(1, MAX_SIDE), distinct=True))  # K-Means seed windows s
    iterations: int = setting(10, Range(1, MAX_COUNT))  # T cosine K-Means iterations
    rho: float = setting(0.8, Range(0, 1, low_open=True))  # keep a cluster when >= rho of its area is unannotated
    # drop candidates smaller than this fraction of the grid
    min_area: float = setting(0.01, Range(0, 1, high_open=True))
    # One minimum area per window size, in place of min_area at every scale (empty: min_area).
    min_area_per_scale: list[float] = setting([], Items(Range(0, 1, high_open=True), min_len=0))
    # across scales, drop a candidate whose mask IoU with a kept one exceeds this
    dedup_iou: float = setting(0.7, Range(0, 1, low_open=True))
    # Also drop a candidate when more than this share of it lies inside a kept, larger one (a part
    # beside its whole); 1 keeps parts (the method's IoU rule alone).
    dedup_containment: float = setting(1.0, Range(0, 1, low_open=True, note="1 turns it off"))
    # cap per image, in mask_order
    max_masks: int = setting(40, Range(1, 254, note="the cache's index maps are 8-bit, 0 meaning none"))
    # Which masks the cap keeps: "area" the largest; "coherence" those whose CLIP features are most
    # alike (the length of the mean of their unit vectors).
    mask_order: str = setting("area", Choice(("area", "coherence")))
    # Split every K-Means cluster into its connected pieces (8-neighbour, patch grid) before the
    # rho rule, so rho and min_area hold per piece (chosen here; docs/pseudo-masks.md measures it).
    components: bool = setting(False, Flag())
    # Clip kept clusters to the unannotated patches (the method). false, an ablation: a candidate is
    # its whole cluster (the rho rule still decides which clusters are kept), since on COCO-Stuff the
    # unannotated region nearly is the unseen classes' outline (docs/method.md#choices-made-here).
    clip_to_unannotated: bool = setting(True, Flag())
    # "masked_cls": a CLS copy attends inside the mask in CLIP's last blocks (the method);
    # "crop": CLIP's image embedding of a square crop around the mask (docs/pseudo-masks.md).
    region_embedding: str = setting("masked_cls", Choice(("masked_cls", "crop")))
    # crop side / the larger side of the mask's bounding box ("crop" only)
    crop_context: float = setting(1.5, Range(1, 100, note="1 is the mask's own bounding box"))
    # After augmentation a pseudo mask may be cut to a sliver whose region embedding still describes
    # the whole region: drop it below this fraction of the training crop (chosen here; 0 keeps any:
    # 0.01 cost seen classes 3.4 points in the world, docs/recipe.md).
    min_crop_area: float = setting(0.0, Range(0, 1, high_open=True, note="0 keeps every target"))
    # where pseudo masks are cached; None: <data.root>/pseudo_masks/<key>
    cache_dir: str | None = setting(None, Text(optional=True))


@dataclass
class LossConfig:
    # "split" (the method) or "hungarian" (the baseline)
    matching: str = setting("split", Choice(("split", "hungarian")))
    cost_class: float = setting(2.0, WEIGHT)  # l_cls
    cost_bce: float = setting(5.0, WEIGHT)  # l_bce
    cost_dice: float = setting(5.0, WEIGHT)  # l_dice
    cost_embed: float = setting(2.0, WEIGHT)  # l_sim, candidate matching (chosen here)
    weight_class: float = setting(2.0, WEIGHT)
    weight_bce: float = setting(5.0, WEIGHT)
    weight_dice: float = setting(5.0, WEIGHT)
    weight_embed: float = setting(2.0, WEIGHT)  # l_emb, candidate alignment 1 - cos(z_i, e_k) (chosen here)
    candidate_weight: float = setting(1.0, WEIGHT)  # lambda_u
    no_object_weight: float = setting(0.1, WEIGHT)
    num_points: int = setting(12544, Range(1, 10_000_000))  # sampled points for matching costs and mask losses
    oversample_ratio: float = setting(3.0, Range(1, 100))
    importance_sample_ratio: float = setting(0.75, PROBABILITY)
    deep_supervision: bool = setting(True, Flag())
    # Candidate mask loss points (chosen here): pseudo masks are only as sharp as the CLIP patch
    # grid, so PointRend's focus on uncertain boundaries buys little there; "importance" restores it.
    candidate_sampling: str = setting("uniform", Choice(("uniform", "importance")))
    # Calibration of matched candidates' class scores over the seen names (chosen here; 0: off):
    # KL(softmax(cos(e_k, t)/distillation_temperature) || softmax(cos(z_i, t)/tau)). Inductive:
    # only the seen names, which training gives the model anyway (docs/method.md).
    candidate_distillation: float = setting(0.0, WEIGHT)
    distillation_temperature: float = setting(0.01, POSITIVE)  # the teacher's T: CLIP's own logit scale 100


@dataclass
class ProxyConfig:
    """A pseudo-unseen proxy (docs/protocols.md): the one legal place to compare settings.

    Seen classes are held out and treated exactly as unseen ones (ignored in training, their
    names unused), and part of the training split becomes the proxy's validation set, scored
    with the remaining seen classes as S and the held-out ones as U. The benchmark's unseen
    classes stay ignored, and are left out of the proxy's scoring (their pixels void).
    """

    enabled: bool = setting(False, Flag())  # train and score the proxy instead of the benchmark (--proxy)
    # seen classes to hold out as pseudo-unseen; null: `count` of them drawn with `seed`
    classes: list[str] | None = setting(None, Names(optional=True))
    # how many to draw; null: the benchmark's share of unseen classes, of the seen ones (at least 1)
    count: int | None = setting(None, OrNull(Range(1, MAX_COUNT)))
    # share of the training split's images (drawn with `seed`) kept out of training as the proxy's
    # validation images (split "proxy-val")
    val_fraction: float = setting(0.1, Range(0, 1, low_open=True, high_open=True))
    seed: int = setting(0, Range(0, 2**63 - 1))  # draws the held-out classes and the validation images


@dataclass
class DataConfig:
    root: str = setting("data/voc", Text())  # a dataset folder (docs/datasets.md)
    train_split: str = setting("train", Text())
    val_split: str = setting("val", Text())
    crop_size: int = setting(512, SIDE)
    # mmseg RandomResize base scale
    resize_scale: list[int] = setting([2048, 512], Items(Range(1, 4 * MAX_SIDE), min_len=2, max_len=2))
    ratio_range: list[float] = setting([0.5, 2.0], Items(Range(0, 100, low_open=True), min_len=2, max_len=2))
    cat_max_ratio: float = setting(0.75, Range(0, 1, low_open=True, note="1 turns the check off"))
    flip_prob: float = setting(0.5, PROBABILITY)
    photometric: bool = setting(True, Flag())
    # Colour of the padding around crops smaller than crop_size (chosen here): "mean" is the CLIP
    # normalisation's mean colour, zero after normalising as mmseg pads (the ViT-B/16 presets');
    # "black" is 0. Equal within the seed spread in the world (docs/recipe.md).
    pad_fill: str = setting("black", Choice(("mean", "black")))
    # Loader processes per training process; "auto": min(cores per process - 1, per-process batch)
    # (splitmatch.data.loader_workers). Which sample gets which augmentation does not depend on it.
    num_workers: int | str = setting("auto", Either(Range(0, 1024), Choice(("auto",))))
    # The unseen classes (their pixels ignored in training, their names unused): null keeps the
    # dataset's classes.json; [] makes every class seen (the fully supervised bound); a list of
    # names sets any other split, e.g. a PASCAL-5i fold's classes (docs/protocols.md).
    unseen: list[str] | None = setting(None, Names(optional=True))
    # Or draw this share of the classes as unseen (split_seed picks them): OC-ZSS's VOC with 25%
    # of the classes seen is 0.75. null: data.unseen or classes.json decides.
    unseen_fraction: float | None = setting(None, OrNull(Range(0, 1, low_open=True, high_open=True)))
    split_seed: int = setting(0, Range(0, 2**63 - 1))  # draws data.unseen_fraction's classes
    # What unseen classes' pixels become in training labels: "ignore" (the inductive protocol, ours)
    # or "background", HSNet's convention for PASCAL-5i / COCO-20i (as LSeg-style numbers were
    # trained); it needs a class named background (docs/protocols.md).
    unseen_pixels: str = setting("ignore", Choice(("ignore", "background")))
    proxy: ProxyConfig = field(default_factory=ProxyConfig)


@dataclass
class TrainConfig:
    iterations: int = setting(20000, Range(1, 10**9))
    # The global batch: under torchrun each of the N processes takes batch_size / N images per step.
    batch_size: int = setting(16, Range(1, MAX_COUNT))
    # Each step's batch is cut into accumulate_steps x processes micro-batches, forwarded one after
    # the other; the step (loss normalisers, clipping, optimizer, schedule, log) is still that of
    # the whole batch. The recipe's batch 16 on one GPU: accumulate_steps 2, 4 or 8 as memory needs.
    accumulate_steps: int = setting(1, Range(1, MAX_COUNT, note="micro-batches per step"))
    lr: float = setting(2e-5, POSITIVE)
    head_lr_multiplier: float = setting(10.0, POSITIVE)  # prompts and decoder heads
    weight_decay: float = setting(0.01, NON_NEGATIVE)
    # apply weight_decay to the visual prompts too (ZegCLIP does; chosen here)
    decay_prompts: bool = setting(False, Flag())
    poly_power: float = setting(0.9, NON_NEGATIVE)
    warmup_iterations: int = setting(1500, Range(0, 10**9, note="0 disables warm-up"))
    warmup_ratio: float = setting(1e-6, Range(0, 1, low_open=True))
    min_lr: float = setting(1e-6, NON_NEGATIVE)
    grad_clip: float = setting(0.01, Range(0, note="0 disables clipping"))  # max gradient norm; 0 disables
    seed: int = setting(0, Range(0, 2**63 - 1))
    # torch.use_deterministic_algorithms for the process (and the library's deterministic kernels
    # where CUDA's are not): bitwise repeatable CUDA training, somewhat slower (docs/reproducibility.md).
    deterministic: bool = setting(False, Flag())
    # "none", "bf16" or "fp16"; CUDA only, CPU always runs float32
    amp: str = setting("bf16", Choice(("none", "bf16", "fp16")))
    log_every: int = setting(50, Range(1, 10**9))
    checkpoint_every: int = setting(2000, Range(1, 10**9))
    keep_checkpoints: int = setting(3, Range(0, 10**6, note="0 keeps every checkpoint"))
    # 0: evaluate once at the end only
    eval_every: int = setting(0, Range(0, 10**9, note="0 evaluates once at the end"))
    tensorboard: bool = setting(False, Flag())  # also write TensorBoard scalars (needs the 'tensorboard' extra)
    # torch.compile the segmentor for training. Off: on the CPU its compilation costs more than it saves
    # over a whole demo run (benchmarks/README.md, bench_compile.py); on a GPU, gpu_check.py measures it.
    compile: bool = setting(False, Flag())
    # Transductive (ZegCLIP, OTSeg+, SPT-SEG; docs/protocols.md): the unseen names are known in
    # training. From transductive_start on, the model's own predictions (argmax over the unseen
    # classes) label pixels of each batch (padding never), and it trains on every class's name. Not
    # the inductive protocol: eval says so beside every number.
    transductive: bool = setting(False, Flag())
    # share of train.iterations trained inductively first (ZegCLIP: 0.5, 10k of 20k VOC, 40k of 80k COCO)
    transductive_start: float = setting(0.5, Range(0, 1, high_open=True))
    # which pixels self-training labels: "unseen", the pixels of unseen classes only (ZegCLIP's
    # _visiable_mask_st: the protocol knows where they are, not their class), or "ignored", every
    # ignored pixel, void ones too (background-as-ignore, borders, crowd; knows nothing of where)
    transductive_pixels: str = setting("unseen", Choice(("unseen", "ignored")))
    # "restart" (ZegCLIP's: its self-training run loads the inductive checkpoint with a fresh AdamW
    # and a fresh warm-up and poly schedule over the remaining iterations) or "continue" (one schedule)
    transductive_schedule: str = setting("restart", Choice(("restart", "continue")))
    # a pixel is labelled only when its unseen class holds at least this share of its class scores;
    # 0: every pixel transductive_pixels names (ZegCLIP's self-training has no threshold)
    transductive_threshold: float = setting(0.0, Range(0, 1, high_open=True, note="0: no threshold"))


@dataclass
class InferenceConfig:
    mode: str = setting("slide", Choice(("slide", "whole")))  # "slide" or "whole"
    short_side: int = setting(512, SIDE)  # evaluation resize (ZegCLIP protocol)
    max_long_side: int = setting(2048, Range(1, 4 * MAX_SIDE))
    window: int = setting(512, SIDE)
    stride: int = setting(426, SIDE)
    # subtracted from seen-class scores (ZegCLIP uses 0.1)
    seen_calibration: float = setting(0.0, Range(0, 1, note="ZegCLIP uses 0.1"))
    # How it is taken off (splitmatch.inference.segmentation.calibrate_seen): "normalised", from
    # scores normalised per pixel (this project's; every preset), or "zegclip", from the raw per-class
    # scores as ZegCLIP does. The world's numbers were measured with "normalised".
    seen_calibration_form: str = setting("normalised", Choice(("normalised", "zegclip")))
    # "none", "bf16" or "fp16" autocast of the model on CUDA; scores stay float32
    amp: str = setting("bf16", Choice(("none", "bf16", "fp16")))
    # How the candidate queries of a Split Matching model score pixels (chosen here, measured in
    # docs/recipe.md). They never get a class or no-object loss, so their no-object logit is
    # untrained: "classes" takes the softmax over the classes alone, "no_object" scores them as
    # seen queries are scored, "excluded" leaves them out. Hungarian models score every query alike.
    candidate_scoring: str = setting("no_object", Choice(("classes", "no_object", "excluded")))
    # tau of their softmax; 0: decoder.logit_temperature (0.01 is CLIP's 100)
    candidate_temperature: float = setting(0.0, Range(0, note="0: decoder.logit_temperature"))
    # factor on the candidates' share of the class scores
    candidate_weight: float = setting(1.0, Range(0, note="0 leaves the candidates' class scores out"))
    candidate_mask_confidence: bool = setting(False, Flag())  # also weight each candidate by its mask's mean confidence


@dataclass
class ExperimentConfig:
    name: str = setting("experiment", Text())
    clip: ClipConfig = field(default_factory=ClipConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    pseudo: PseudoMaskConfig = field(default_factory=PseudoMaskConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    # Relative paths as they were written ({"data.root": "data/voc"}), recorded by resolve_paths
    # when it made them absolute; shown in messages, never used to find a file.
    given_paths: dict[str, str] = setting({}, TextMap(), compare=False)

    def validate(self) -> ExperimentConfig:
        """Checks every value (type, range) and the relations between them; returns self.

        Each field's rule is written beside it; the checks are :mod:`splitmatch.config.rules`. A
        violation raises :class:`ConfigError` naming the dotted key and what it may be.
        """
        check_config(self)
        return self
