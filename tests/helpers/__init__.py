"""What the tests share besides fixtures (conftest.py holds only fixtures and imports from here).

- audio.py: write_tone, a sine tone written as an audio file.
- video.py: write_video, a small H.264 video with an optional audio track (PyAV).
- corpora.py: corpora the tests make or copy, with the overrides that point a run at each:
  SMALL_DEMO and small_demo_overrides (the session's synthetic corpus), tone_corpus and TINY_RUN,
  copy_subset and subset_overrides.
- tables.py: ravdess_like_table, an utterance table without audio files.
- configs.py: compose_train, the real Hydra configs composed the way the entry point does.
- models.py: TINY_NET and tiny_module, a tiny untrained SERModule built from the real configs.
- callbacks.py: KillAtStep, a callback that SIGKILLs a training run (a Hydra target in subprocesses).
- cache_build_child.py: `python -m tests.helpers.cache_build_child`, a process that builds caches,
  for the interruption tests (make_datamodule is its data module).
"""
