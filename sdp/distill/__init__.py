"""Teacher -> student distillation in the SFT stage: output KD (`kd`: hard labels + temperature-scaled logits)."""

from sdp.distill.kd import KDConfig, KDSFTTrainer, check_same_tokenizer, kd_loss

__all__ = ["KDConfig", "KDSFTTrainer", "check_same_tokenizer", "kd_loss"]
