/* A nats-server stand-in whose every run, `nats-server -t` included, never ends: as PID 1 in
 * its container it has no signal handlers, so it ignores the SIGTERM `docker run` passes on
 * and only SIGKILL (`docker rm -f`) stops it. `up` must give up on it within its bound. */
#include <unistd.h>

int main(void) {
    for (;;)
        pause();
}
