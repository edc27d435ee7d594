"""The offline stages: augmentation records and their sources (LLM, gold data, cloze), per-passage
LoRA encoding and translator training. Nothing here imports the Explorer: encoders are handed to it."""
