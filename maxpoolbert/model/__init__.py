"""Layer 3, the model: pooling strategies, encoder families and folders, the classifier, its Hugging Face form (imports core)."""
