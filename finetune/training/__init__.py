"""The trainer: plain PyTorch, no ORM. The services hand in texts, settings and callbacks and get
a ``TrainResult`` back.

- ``config``: the settings of one run (``TrainSettings``) and the demo preset;
- ``examples``: the seeded train / validation / test split and the token windows (packing);
- ``loop``: the training loop, LoRA, keeping the best weights, saving;
- ``evaluation``: loss and perplexity of a split; ``estimate``: steps and time before a run;
- ``errors``: what stops a run, with the field at fault.
"""
