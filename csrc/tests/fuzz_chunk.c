/*
 * Fuzz target for the tunnel chunk decoder.
 *
 *  - libFuzzer:  clang -fsanitize=fuzzer,address,undefined -I csrc csrc/tests/fuzz_chunk.c csrc/arms_chunk.c
 *  - AFL++ / corpus replay with gcc (this file's own main):
 *        make -C csrc fuzz-bin && csrc/build/fuzz_chunk FILE...   (or stdin)
 *
 * The input is decoded three ways: in one call, byte by byte, and split at a position taken
 * from the first byte. Every way must reach the same outcome (the same chunks, or an error),
 * and no way may read or write outside the buffers (the sanitizers check).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arms_chunk.h"

struct summary {
    int error;
    uint32_t nchunks;
    uint64_t data_bytes, hash;
};

static void run(const uint8_t *buf, size_t len, size_t step, size_t cut, struct summary *s)
{
    struct arms_chunk_decoder d;
    struct arms_chunk_event ev;
    size_t pos = 0;
    memset(&d, 0, sizeof d);
    memset(s, 0, sizeof *s);
    d.max_chunk = 4096;
    s->hash = 1469598103934665603ull;
    while (pos < len) {
        size_t n = step ? step : (pos < cut ? cut - pos : len - pos);
        size_t off = 0;
        if (n > len - pos)
            n = len - pos;
        while (off < n) {
            long r = arms_chunk_decode(&d, buf + pos + off, n - off, &ev);
            size_t i;
            if (r < 0) {
                s->error = 1;
                return;
            }
            if ((size_t)r > n - off)
                abort();
            off += (size_t)r;
            if (ev.kind == ARMS_CHUNK_EV_DATA) {
                s->data_bytes += ev.data_len;
                for (i = 0; i < ev.data_len; i++)
                    s->hash = (s->hash ^ ev.data[i]) * 1099511628211ull;
            } else if (ev.kind != ARMS_CHUNK_EV_NEED_MORE) {
                s->nchunks++;
                s->hash = (s->hash ^ ev.id ^ ((uint64_t)ev.flags << 32)) * 1099511628211ull;
            }
        }
        pos += n;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct summary a, b, c;
    size_t cut = size ? data[0] % (size + 1) : 0;
    run(data, size, 0, size, &a);
    run(data, size, 1, 0, &b);
    run(data, size, 0, cut, &c);
    if (a.error != b.error || a.error != c.error)
        abort();
    if (!a.error && (memcmp(&a, &b, sizeof a) != 0 || memcmp(&a, &c, sizeof a) != 0))
        abort();
    return 0;
}

#ifndef ARMS_FUZZ_LIBFUZZER
static int one(FILE *f)
{
    static uint8_t buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf, f);
    uint8_t *copy = malloc(n ? n : 1); /* exact-size heap copy: ASan sees over-reads */
    if (copy == NULL)
        return 1;
    memcpy(copy, buf, n);
    LLVMFuzzerTestOneInput(copy, n);
    free(copy);
    return 0;
}

int main(int argc, char **argv)
{
    int i;
    if (argc < 2)
        return one(stdin);
    for (i = 1; i < argc; i++) {
        FILE *f = fopen(argv[i], "rb");
        if (f == NULL) {
            perror(argv[i]);
            return 1;
        }
        if (one(f) != 0)
            return 1;
        fclose(f);
    }
    printf("fuzz_chunk: %d inputs ok\n", argc - 1);
    return 0;
}
#endif
