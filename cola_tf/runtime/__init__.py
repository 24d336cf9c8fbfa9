"""Running a pretraining job: the trainer (`training`: orbit step, Controller, checkpoints),
its optimizer and schedule (`optimization`), gin configuration (`configuration`), strategies
(`distribute`), the graceful stop on signals (`preemption`) and one trainer per model_dir
(`workdir_lock`)."""
