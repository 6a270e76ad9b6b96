"""Training Frozen models with the Hugging Face `Trainer`, one job per module.

- `arguments`: the three argument dataclasses and YAML + command-line parsing;
- `build`: the model and processor, with the ablations (frozen backbone, LoRA, LM from scratch);
- `trainer`: `FrozenTrainer`, with its callbacks;
- `checkpoints`: the output folder (claiming, the run's defining arguments) and complete checkpoints;
- `loop`: the steps of a run around `Trainer.train` (the trainer, the status log, the saved model);
- `errors`: the errors a run raises on purpose.

The program that strings them together is `frozen_hf.programs.train`; caption data sets are `frozen_hf.data.captions`.
"""
