// SIGINT and SIGTERM (Ctrl-C, a job scheduler's preemption) ask the trainer to stop between two steps,
// so that it can write a checkpoint first; a second signal ends the process at once.
#pragma once

namespace coldstart {

// Installs the handlers. The first signal is only recorded (and a line says so on stderr); a second one
// exits at once with status 128 + signal, leaving no half-written file under a final name.
void install_stop_handlers();

// The first signal received (SIGINT or SIGTERM), or 0.
int stop_signal();

}  // namespace coldstart
