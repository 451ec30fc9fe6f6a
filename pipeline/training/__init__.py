"""Training: the base, preprocess and train stages, the Trainer set-up, resume and speed options."""
