"""Chinese medical text: condition names, ROUGE / BLEU, near-duplicates (data and evaluation)."""
