"""Generation from trained runs: text from language models (:mod:`.text`: ``liandan.generate``,
``exact_match``, the token sampler ``sample_tokens``) and images from generative models
(:mod:`.images`: ``liandan.sample``, ``draw_images``)."""
