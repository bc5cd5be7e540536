"""Builds a :class:`SplitMatchSegmentor` from the `clip` and `decoder` config sections; every number is theirs."""

from __future__ import annotations

from splitmatch.clip.image_encoder import ClipImageEncoder
from splitmatch.clip.loading import build_clip, clip_tokenizer
from splitmatch.clip.text_encoder import ClipTextEncoder, prompt_templates
from splitmatch.config import ClipConfig, DecoderConfig
from splitmatch.model.mfe import MultiScaleFeatureEnhancement
from splitmatch.model.pixel_decoder import PixelDecoder
from splitmatch.model.query_decoder import QueryDecoder
from splitmatch.model.segmentor import SplitMatchSegmentor


def build_segmentor(clip_cfg: ClipConfig, dec: DecoderConfig, load_clip_weights: bool = True) -> SplitMatchSegmentor:
    """Builds the model on the CPU.

    Args:
        clip_cfg: the config's ``clip`` section (architecture, weights, prompts, layers, templates).
        dec: the config's ``decoder`` section.
        load_clip_weights: ``False`` skips reading ``clip.weights`` (the caller loads a full
            checkpoint next, which holds the CLIP weights too).
    """
    clip = build_clip(clip_cfg.arch, clip_cfg.weights if load_clip_weights else None)
    image_encoder = ClipImageEncoder(
        clip.visual,
        prompt_tokens=clip_cfg.prompt_tokens,
        prompt_layers=clip_cfg.prompt_layers,
        feature_layers=clip_cfg.decoder_layers if dec.fuse_intermediate else [],
        region_layers=clip_cfg.region_layers,
        pos_interpolation=clip_cfg.pos_interpolation,
    )
    text_encoder = ClipTextEncoder(clip, clip_tokenizer(clip_cfg.arch), prompt_templates(clip_cfg.templates))
    mfe = MultiScaleFeatureEnhancement(dec.hidden_dim, dec.mfe_pool_factors) if dec.mfe else None
    pixel_decoder = PixelDecoder(
        embed_dim=image_encoder.embed_dim,
        clip_width=image_encoder.width,
        hidden_dim=dec.hidden_dim,
        num_feature_layers=len(image_encoder.feature_layers),
        mfe=mfe,
        mask_upsample=dec.mask_upsample,
    )
    query_decoder = QueryDecoder(
        hidden_dim=dec.hidden_dim,
        embed_dim=image_encoder.embed_dim,
        num_layers=dec.num_layers,
        num_heads=dec.num_heads,
        ffn_dim=dec.ffn_dim,
        num_seen_queries=dec.num_seen_queries,
        # The baseline keeps the same queries (all matched to seen GT) so that only matching differs.
        num_candidate_queries=dec.num_candidate_queries,
        masked_attention=dec.masked_attention,
        temperature=dec.logit_temperature,
        group_embed_heads=dec.group_embed_heads,
    )
    return SplitMatchSegmentor(image_encoder, text_encoder, pixel_decoder, query_decoder)
