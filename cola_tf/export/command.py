"""How the commands that write an export (`python -m cola_tf.export`, `python -m
cola_tf.import_audax`) end: one line, and the exit code of what stopped them."""
import signal

import tensorflow as tf

from cola_tf import logs
from cola_tf.runtime import preemption


def write_for_command(write, output, setting_errors=(ValueError,)):
  """Runs `write()` (it returns the export's metadata) for a command line: (metadata, 0), or
  (None, code) after one error line: 2 for `setting_errors` (a bad request, checkpoint or
  config), 1 when writing `output` failed, 128 + N when signal N stopped it (the staging
  folder is already removed, `output` left as it was)."""
  try:
    return write(), 0
  except KeyboardInterrupt:
    signum = preemption.interrupted_by() or signal.SIGINT
    logs.log(f"stopped on {signal.Signals(signum).name}: {output} is left as it was",
             error=True)
    return None, 128 + signum
  except setting_errors as e:
    logs.log(f"error: {e}", error=True)
    return None, 2
  except (OSError, tf.errors.OpError) as e:
    logs.log(f"error: writing {output} failed: {' '.join(str(e).split())}", error=True)
    return None, 1
