/*
 * Micro-benchmarks of the core in C (no Python): heartbeat packets built + signed per second,
 * and chunk decoding throughput over the captured tunnel stream repeated. Prints one
 * "name value" line per figure; bench/heartbeat.py and bench/chunk.py run it.
 *
 *   bench_core [seconds-per-figure]
 */
#define _GNU_SOURCE 1
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "arms_chunk.h"
#include "arms_hb.h"
#include "hb_vectors.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static volatile uint32_t sink;

int main(int argc, char **argv)
{
    double secs = argc > 1 ? atof(argv[1]) : 1.0, t0, t;
    uint8_t id[16];
    struct arms_hb_packet p;
    uint64_t n = 0;
    const struct chunk_stream *s = &chunk_streams[1]; /* s2c: no zero chunk at the end */
    size_t reps = 400, total, i;
    uint8_t *big;

    if (arms_hb_parse_distribution_id("0001-1234-5678-9ABC-DEF0-1122-3344-5566", id) != 0)
        return 1;
    memset(&p, 0, sizeof p);
    arms_hb_set_distribution_id(&p, id);
    /* the datagram of the tunnel capture: 4 items, then HMAC-SHA1 */
    t0 = now_s();
    do {
        int k;
        for (k = 0; k < 256; k++) {
            arms_hb_clear(&p);
            arms_hb_set_cpu_usage(&p, 0, 50);
            arms_hb_set_mem_usage(&p, 0, 65536, 32768);
            arms_hb_set_traffic_rate(&p, 0, 1024, 2048, 1, 2, 0, 0);
            arms_hb_set_traffic_rate(&p, 1, 2048, 1024, 2, 1, 0, 0);
            arms_hb_sign(&p, (const uint8_t *)"hb-passphrase-xyz", 17);
            sink += p.buf[4];
        }
        n += 256;
        t = now_s() - t0;
    } while (t < secs);
    if (p.len != 181 || memcmp(p.buf, hb_vectors[7].packet, 181) != 0) {
        fprintf(stderr, "bench packet differs from the vector\n");
        return 1;
    }
    printf("hb_build_sign_per_s %.0f\n", (double)n / t);

    total = s->len * reps;
    big = malloc(total);
    if (big == NULL)
        return 1;
    for (i = 0; i < reps; i++)
        memcpy(big + i * s->len, s->body, s->len);
    n = 0;
    t0 = now_s();
    do {
        struct arms_chunk_decoder d;
        struct arms_chunk_event ev;
        size_t pos = 0;
        memset(&d, 0, sizeof d);
        while (pos < total) {
            size_t len = total - pos < 4096 ? total - pos : 4096; /* TLS-record-sized reads */
            size_t off = 0;
            while (off < len) {
                long r = arms_chunk_decode(&d, big + pos + off, len - off, &ev);
                if (r < 0)
                    return 1;
                off += (size_t)r;
                sink += (uint32_t)ev.kind;
            }
            pos += len;
        }
        n += total;
        t = now_s() - t0;
    } while (t < secs);
    printf("chunk_decode_mb_per_s %.1f\n", (double)n / t / 1e6);
    free(big);
    return 0;
}
