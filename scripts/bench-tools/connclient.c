// Bench client for scripts/bench.
//   connclient rate HOST PORT SECONDS [PER_SECOND]
//                                       connect+close as fast as one process can (or paced at
//                                       PER_SECOND); prints JSON with the rate and connect()
//                                       latency percentiles
//   connclient refused HOST PORT SECONDS  the same, for a destination the guard refuses: counts
//                                       connects that fail with EPERM (any other outcome is "unexpected")
//   connclient hold HOST PORT N         opens N connections, prints "ready", holds them until stdin closes
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int dial(struct sockaddr_in *sa)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    if (connect(fd, (struct sockaddr *)sa, sizeof(*sa)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: %s rate HOST PORT SECONDS | hold HOST PORT N\n", argv[0]);
        return 2;
    }
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[3]))};
    inet_pton(AF_INET, argv[2], &sa.sin_addr);

    if (strcmp(argv[1], "hold") == 0) {
        int n = atoi(argv[4]), opened = 0;
        for (int i = 0; i < n; i++)
            if (dial(&sa) >= 0)
                opened++;
        printf("ready %d\n", opened);
        fflush(stdout);
        char buf[16];
        while (read(0, buf, sizeof buf) > 0) {
        }
        return opened == n ? 0 : 1;
    }

    int refusals = strcmp(argv[1], "refused") == 0;
    double seconds = atof(argv[4]);
    double pace = argc > 5 ? atof(argv[5]) : 0; // connections per second; 0: as fast as possible
    size_t cap = 1 << 22, n = 0;
    double *lat = malloc(cap * sizeof(double));
    long failures = 0, unexpected = 0;
    struct linger rst = {1, 0}; // close with RST: no TIME_WAIT, so ports never run out
    double start = now_us(), end = start + seconds * 1e6, t;
    long started = 0;
    if (pace > 0)
        prctl(PR_SET_TIMERSLACK, 1000); // wake within ~1 us of the slot, not the default 50
    while ((t = now_us()) < end) {
        if (pace > 0) {
            // ahead of schedule: wait for the next slot (a steady rate, not bursts)
            double due = start + started * 1e6 / pace;
            if (t < due) {
                struct timespec ts = {0, (long)((due - t) * 1e3)};
                nanosleep(&ts, 0);
                continue;
            }
        }
        started++;
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        double t0 = now_us();
        int rc = connect(fd, (struct sockaddr *)&sa, sizeof sa);
        if (refusals) {
            if (rc != 0 && errno == EPERM) {
                if (n < cap)
                    lat[n++] = now_us() - t0;
            } else {
                unexpected++;
            }
        } else if (rc != 0) {
            failures++;
        } else if (n < cap) {
            lat[n++] = now_us() - t0;
        }
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &rst, sizeof rst);
        close(fd);
    }
    double elapsed = (now_us() - start) / 1e6;
    qsort(lat, n, sizeof(double), cmp);
    printf("{\"connections\":%zu,\"failures\":%ld,\"unexpected\":%ld,\"seconds\":%.3f,\"rate\":%.1f,\"p50_us\":%.1f,\"p99_us\":%.1f}\n",
           n, failures, unexpected, elapsed, n / elapsed, n ? lat[n / 2] : 0, n ? lat[(size_t)(n * 0.99)] : 0);
    return unexpected ? 1 : 0;
}
