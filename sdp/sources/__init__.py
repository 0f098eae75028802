"""Where problems come from and how they become prompts: problem sources and their adapters
(`problems`, `adapters`), prompt templates (`templates`) and decontamination against the held-out set
(`decontaminate`). See docs/data.md."""
