"""Fine-tuning the LLM for the agent: LoRA adapters for ranking and for grounded replies."""
