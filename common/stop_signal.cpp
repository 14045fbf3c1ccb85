#include "common/stop_signal.h"

#include <unistd.h>

#include <csignal>

namespace coldstart {

namespace {

volatile sig_atomic_t first_signal = 0;

void say(const char* text, size_t n) {  // write(2) is async-signal-safe, stdio is not
    const ssize_t ignored = write(STDERR_FILENO, text, n);
    (void)ignored;
}

extern "C" void on_stop_signal(int sig) {
    if (first_signal != 0) {
        static const char msg[] = "\nsecond signal: stopping at once, without a checkpoint\n";
        say(msg, sizeof msg - 1);
        _exit(128 + sig);
    }
    first_signal = sig;
    static const char msg[] = "\nsignal received: finishing the current step, then writing a checkpoint "
                              "(a second signal stops at once)\n";
    say(msg, sizeof msg - 1);
}

}  // namespace

void install_stop_handlers() {
    struct sigaction action {};
    action.sa_handler = on_stop_signal;
    sigemptyset(&action.sa_mask);
    action.sa_flags = SA_RESTART;  // reads and writes in progress continue instead of failing with EINTR
    sigaction(SIGINT, &action, nullptr);
    sigaction(SIGTERM, &action, nullptr);
}

int stop_signal() { return first_signal; }

}  // namespace coldstart
