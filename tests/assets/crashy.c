/* A nats-server stand-in that passes `nats-server -t` but never starts: a bad build, a
 * missing volume. `up` must roll back from it to the last server that worked. */
#include <string.h>

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "-t") == 0)
            return 0;
    return 1;
}
