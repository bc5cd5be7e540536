"""Training, its own wing: the loop, its step, its state on disk and the run folder it writes.

* :mod:`~splitmatch.train.trainer`: :func:`train`, setup then the loop, single process or ``torchrun``;
* :mod:`~splitmatch.train.step`: one optimisation step (micro-batches, targets, losses, update);
* :mod:`~splitmatch.train.targets`: a collated batch -> the matchers' and criterion's targets;
* :mod:`~splitmatch.train.optim`: AdamW parameter groups and the poly schedule with warm-up;
* :mod:`~splitmatch.train.sampler`, :mod:`~splitmatch.train.micro_batches`: which images each step
  and process take, and how a step's batch is cut;
* :mod:`~splitmatch.train.state`: optimizer, schedule and random state in step checkpoints;
* :mod:`~splitmatch.train.run_folder`, :mod:`~splitmatch.train.run_record`: the run folder's lock,
  checks and records (config, environment, metrics, eval);
* :mod:`~splitmatch.train.seeds`: one config trained with several seeds, mean and spread.
"""
