/* A nats-server stand-in whose config check refuses every config, as a real nats-server refuses
 * one it cannot load (a key that does not match its certificate, an option an older server does
 * not know). natsup's state repairs the one such config it could itself produce before upload,
 * so the validation gate is exercised with this image. */
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "-t") == 0) {
            fprintf(stderr, "nats-server: stand-in refuses this configuration\n");
            return 1;
        }
    return 1;
}
