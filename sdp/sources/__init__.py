"""Where problems come from and how they become prompts: loading and validating problem sets."""
