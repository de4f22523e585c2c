"""Stable Diffusion fine-tuning per FST x diagnosis: textual inversion and LoRA (peft).

The literature's quickest route (Wang et al., MICCAI 2024 ISIC workshop): learn a token per
condition by textual inversion, then LoRA-fine-tune Stable Diffusion on captions that name the
skin type and diagnosis. Outputs load with stock diffusers (``load_textual_inversion``,
``load_lora_weights``). ``config`` imports no torch; the training modules are imported on use.
"""
