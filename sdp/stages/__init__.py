"""The round's stages, in data-flow order: problems -> `sample` -> samples -> `verify` -> verdicts
-> `select` -> SFT set -> `train` -> checkpoint -> `evaluate` -> metrics -> `summary`.

Each heavy stage (sample, train) runs as its own child process, `python -m sdp.stages.<stage> JOB.json`,
so vLLM's and the trainer's memory is returned to the system when it ends.
"""
