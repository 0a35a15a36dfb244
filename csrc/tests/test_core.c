/*
 * C unit tests of the core, run natively (ASan + UBSan) and under qemu-user for armhf, mipsel
 * and big-endian mips (tests/test_core_cross.py).
 *
 * Build flags:
 *   ARMS_TEST_CRYPTO  - libcrypto is linked: check the HMAC-SHA1 signing against the vectors
 *   ARMS_TEST_SENDER  - the sender thread is linked: send over loopback UDP and read it back
 * Without them (big-endian mips: no libcrypto userland) the builder is checked with the
 * vector's digest passed in, which is what keeps the builder independent of the digest.
 *
 * Prints one line per test group and "ALL OK" at the end; exits non-zero on the first failure.
 */
#define _GNU_SOURCE 1
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arms_chunk.h"
#include "arms_hb.h"
#include "arms_keepalive.h"
#include "hb_vectors.h"

#ifdef ARMS_TEST_SENDER
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>
#include "arms_hb_sender.h"
#endif

static int failures;

#define CHECK(cond)                                                                  \
    do {                                                                             \
        if (!(cond)) {                                                               \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
            failures++;                                                              \
            return;                                                                  \
        }                                                                            \
    } while (0)

/* ------------------------------------------------------------------ heartbeat builder */

static int apply_call(struct arms_hb_packet *p, const struct hb_call *c)
{
    const uint64_t *a = c->a;
    switch (c->fn) {
    case 0: return arms_hb_set_cpu_usage(p, (uint16_t)a[0], (uint8_t)a[1]);
    case 1: return arms_hb_set_cpu_detail_usage(p, (uint16_t)a[0], (uint8_t)a[1], (uint8_t)a[2],
                                                (uint8_t)a[3], (uint8_t)a[4], (uint8_t)a[5]);
    case 2: return arms_hb_set_mem_usage(p, (uint16_t)a[0], a[1], a[2]);
    case 3: return arms_hb_set_disk_usage(p, (uint16_t)a[0], a[1], a[2]);
    case 4: return arms_hb_set_traffic_count(p, (uint16_t)a[0], a[1], a[2], a[3], a[4], a[5], a[6]);
    case 5: return arms_hb_set_traffic_rate(p, (uint16_t)a[0], a[1], a[2], a[3], a[4], a[5], a[6]);
    case 6: return arms_hb_set_radiowave(p, (uint16_t)a[0], (uint8_t)a[1], (uint8_t)a[2],
                                         (uint8_t)a[3], (uint8_t)a[4]);
    }
    return -1;
}

static void test_hb_vectors(void)
{
    size_t i, k;
    for (i = 0; i < N_HB_VECTORS; i++) {
        const struct hb_vector *v = &hb_vectors[i];
        struct arms_hb_packet p;
        uint8_t id[16], zeroed[ARMS_HB_MAX_PACKET];
        const uint8_t *in;
        size_t len;

        memset(&p, 0, sizeof p); /* zero-filled is a valid empty packet */
        CHECK(arms_hb_parse_distribution_id(v->distid, id) == 0);
        CHECK(arms_hb_set_distribution_id(&p, id) == ARMS_HB_OK);
        for (k = 0; k < v->ncalls; k++) {
            int rc = apply_call(&p, &v->calls[k]);
            CHECK(rc == (v->calls[k].eexist ? ARMS_HB_EEXIST : ARMS_HB_OK));
        }
        in = arms_hb_digest_input(&p, &len);
        CHECK(len == v->len);
        memcpy(zeroed, v->packet, v->len);
        memset(zeroed + 4, 0, 20);
        CHECK(memcmp(in, zeroed, len) == 0);
        arms_hb_set_digest(&p, v->packet + 4); /* the digest passed in */
        CHECK(p.len == v->len && memcmp(p.buf, v->packet, v->len) == 0);
#ifdef ARMS_TEST_CRYPTO
        memset(p.buf + 4, 0xAA, 20);
        CHECK(arms_hb_sign(&p, (const uint8_t *)v->key, v->keylen) == ARMS_HB_OK);
        CHECK(memcmp(p.buf, v->packet, v->len) == 0);
#endif
    }
    printf("hb vectors: %d rebuilt byte for byte%s\n", N_HB_VECTORS,
#ifdef ARMS_TEST_CRYPTO
           " (signed with libcrypto)"
#else
           " (digest passed in)"
#endif
    );
}

static void test_hb_rules(void)
{
    struct arms_hb_packet p;
    uint8_t id[16];
    int i;
    memset(&p, 0, sizeof p);
    /* a zero-filled packet: setters work, the prefix appears with an all-zero id */
    CHECK(arms_hb_set_cpu_usage(&p, 0, 1) == ARMS_HB_OK);
    CHECK(p.len == 44 + 7 && p.buf[0] == 0 && p.buf[1] == 1 && p.buf[3] == 20);
    CHECK(p.buf[24] == 0 && p.buf[25] == 0x11 && p.buf[27] == 16);
    arms_hb_clear(&p);
    CHECK(p.len == 44 && p.buf[44] == 0);
    for (i = 0; i < 140; i++)
        CHECK(arms_hb_set_cpu_usage(&p, (uint16_t)i, 100) == ARMS_HB_OK);
    CHECK(p.len == 1024);
    CHECK(arms_hb_set_cpu_usage(&p, 140, 1) == ARMS_HB_ESIZE);
    CHECK(arms_hb_set_cpu_usage(&p, 5, 1) == ARMS_HB_EEXIST);
    arms_hb_clear(&p);
    for (i = 0; i < 18; i++)
        CHECK(arms_hb_set_traffic_rate(&p, (uint16_t)i, 1, 2, 3, 4, 5, 6) == ARMS_HB_OK);
    CHECK(arms_hb_set_traffic_rate(&p, 99, 1, 2, 3, 4, 5, 6) == ARMS_HB_ESIZE);
    arms_hb_clear(&p);
    /* the same index in another kind is no duplicate; byte order is big-endian */
    CHECK(arms_hb_set_mem_usage(&p, 0x0102, 0x0102030405060708ull, 1) == ARMS_HB_OK);
    CHECK(arms_hb_set_disk_usage(&p, 0x0102, 1, 2) == ARMS_HB_OK);
    CHECK(p.buf[44] == 0x00 && p.buf[45] == 0x35 && p.buf[46] == 0 && p.buf[47] == 18);
    CHECK(p.buf[48] == 0x01 && p.buf[49] == 0x02 && p.buf[50] == 0x01 && p.buf[57] == 0x08);
    CHECK(arms_hb_set_disk_usage(&p, 0x0102, 3, 4) == ARMS_HB_EEXIST);
    CHECK(arms_hb_set_cpu_usage(NULL, 0, 0) == ARMS_HB_EINVAL);
    CHECK(arms_hb_parse_distribution_id("0001-1234-5678-9abc-DEF0-1122-3344-5566", id) == 0);
    CHECK(id[0] == 0x00 && id[1] == 0x01 && id[6] == 0x9a && id[15] == 0x66);
    CHECK(arms_hb_parse_distribution_id("0001-1234-5678-9ABC-DEF0-1122-3344-556", id) == -1);
    CHECK(arms_hb_parse_distribution_id("0001-1234-5678-9ABC-DEF0-1122-3344-55667", id) == -1);
    CHECK(arms_hb_parse_distribution_id("0001_1234-5678-9ABC-DEF0-1122-3344-5566", id) == -1);
    printf("hb rules: capacity, ESIZE, EEXIST, zero-filled packet, byte order\n");
}

/* ------------------------------------------------------------------ chunk codec */

struct got_chunk {
    uint32_t flags, id;
    size_t off, len; /* data in the collector's buffer */
};

struct collector {
    struct arms_chunk_decoder d;
    struct got_chunk chunks[64];
    size_t n;
    uint8_t data[70000];
    size_t data_len, cur_start;
    int error, ended;
};

/* Feed buf to the collector; returns -1 once the decoder failed. */
static int feed(struct collector *c, const uint8_t *buf, size_t len)
{
    size_t pos = 0;
    if (c->error)
        return -1;
    while (pos < len || len == 0) {
        struct arms_chunk_event ev;
        long r = arms_chunk_decode(&c->d, buf + pos, len - pos, &ev);
        if (r < 0) {
            c->error = c->d.error;
            return -1;
        }
        if ((size_t)r > len - pos)
            abort(); /* consumed more than given */
        pos += (size_t)r;
        if (ev.kind == ARMS_CHUNK_EV_DATA) {
            if (ev.data != buf + pos - ev.data_len || c->data_len + ev.data_len > sizeof c->data)
                abort();
            memcpy(c->data + c->data_len, ev.data, ev.data_len);
            c->data_len += ev.data_len;
        } else if (ev.kind == ARMS_CHUNK_EV_CHUNK || ev.kind == ARMS_CHUNK_EV_END) {
            if (c->n < 64) {
                c->chunks[c->n].flags = ev.flags;
                c->chunks[c->n].id = ev.id;
                c->chunks[c->n].off = c->cur_start;
                c->chunks[c->n].len = c->data_len - c->cur_start;
                c->n++;
            }
            c->cur_start = c->data_len;
            if (ev.kind == ARMS_CHUNK_EV_END)
                c->ended = 1;
        } else if (len == 0 || pos == len) {
            break;
        }
    }
    return 0;
}

static void reset(struct collector *c, uint32_t max_chunk)
{
    memset(c, 0, sizeof *c);
    c->d.max_chunk = max_chunk;
}

static int same_as_expected(const struct collector *c, const struct chunk_stream *s)
{
    size_t i;
    if (c->error || c->n != s->nchunks)
        return 0;
    for (i = 0; i < c->n; i++) {
        const struct exp_chunk *e = &s->chunks[i];
        const struct got_chunk *g = &c->chunks[i];
        if (g->flags != e->flags || g->id != e->id || g->len != e->len
            || memcmp(c->data + g->off, s->body + e->off, e->len) != 0)
            return 0;
    }
    return 1;
}

static struct collector col, col2;

static void test_chunk_streams(void)
{
    size_t si, cut, i;
    for (si = 0; si < N_CHUNK_STREAMS; si++) {
        const struct chunk_stream *s = &chunk_streams[si];
        for (cut = 0; cut <= s->len; cut++) {
            reset(&col, 0);
            CHECK(feed(&col, s->body, cut) == 0);
            CHECK(feed(&col, s->body + cut, s->len - cut) == 0);
            if (!same_as_expected(&col, s)) {
                fprintf(stderr, "stream %s split at %zu differs\n", s->name, cut);
                CHECK(0);
            }
        }
        reset(&col, 0);
        for (i = 0; i < s->len; i++)
            CHECK(feed(&col, s->body + i, 1) == 0);
        CHECK(same_as_expected(&col, s));
        printf("chunk stream %s: %zu chunks, same at all %zu split points and byte by byte\n",
               s->name, s->nchunks, s->len + 1);
    }
}

static void test_chunk_forms(void)
{
    static const struct { const char *in; int ok; uint32_t flags, id; } cases[] = {
        {"4;echo;trail\r\nabcd\r\n", 1, ARMS_CHUNK_F_ECHO_RESPONSE | ARMS_CHUNK_F_TRAIL, 0},
        {"4;echo-request;trail\r\nabcd\r\n", 1, ARMS_CHUNK_F_ECHO_REQUEST | ARMS_CHUNK_F_TRAIL, 0},
        {"0004;ID=3;x-ext=1;;id=17\r\nabcd\r\n", 1, 0, 17},
        {"4;id=4294967295;trail\r\nabcd\r\n", 1, ARMS_CHUNK_F_TRAIL, 4294967295u},
        {"zz;id=1\r\nab\r\n", 0, 0, 0},
        {";id=1\r\nab\r\n", 0, 0, 0},
        {"2;id=\r\nab\r\n", 0, 0, 0},
        {"2;id=1x\r\nab\r\n", 0, 0, 0},
        {"2;id=4294967296\r\nab\r\n", 0, 0, 0},
        {"2;id=1\r\nabXY", 0, 0, 0},
        {"2;id=1\nab\r\n", 0, 0, 0},
        {"2 ;id=1\r\nab\r\n", 0, 0, 0},
        {"10001\r\n", 0, 0, 0},
        {"ffffffffffffffffff\r\n", 0, 0, 0},
        {"0\r\nX-Trailer: 1\r\n\r\n", 0, 0, 0},
        {"0\r\n\r\n4;id=1\r\nabcd\r\n", 0, 0, 0},
    };
    size_t i;
    char big[300];
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        reset(&col, 0);
        int r = feed(&col, (const uint8_t *)cases[i].in, strlen(cases[i].in));
        if (cases[i].ok) {
            CHECK(r == 0 && col.n == 1 && col.chunks[0].flags == cases[i].flags);
            CHECK(col.chunks[0].id == cases[i].id && col.chunks[0].len == 4);
        } else {
            CHECK(r == -1 && col.d.error != 0);
            /* a failed decoder stays failed */
            CHECK(feed(&col, (const uint8_t *)"4;id=1\r\nabcd\r\n", 14) == -1);
        }
    }
    /* header limit: 255 bytes pass, 256 fail */
    memset(big, 'x', sizeof big);
    memcpy(big, "1;", 2);
    memcpy(big + 255, "\r\na\r\n", 5);
    reset(&col, 0);
    CHECK(feed(&col, (const uint8_t *)big, 260) == 0 && col.n == 1);
    memset(big, 'x', sizeof big);
    memcpy(big, "1;", 2);
    memcpy(big + 256, "\r\na\r\n", 5);
    reset(&col, 0);
    CHECK(feed(&col, (const uint8_t *)big, 261) == -1 && col.d.error == ARMS_CHUNK_E_HEADER);
    /* max_chunk */
    reset(&col, 1024);
    CHECK(feed(&col, (const uint8_t *)"401;id=1\r\n", 10) == -1 && col.d.error == ARMS_CHUNK_E_TOO_BIG);
    printf("chunk forms: accepted and rejected headers, limits\n");
}

static void test_chunk_encode(void)
{
    uint8_t out[70000], data[65536];
    char head[ARMS_CHUNK_HEADER_BUFSZ];
    long n;
    size_t i;
    CHECK(arms_chunk_header(head, sizeof head, 0x13b, 1094026423u, 1) == 25);
    CHECK(memcmp(head, "13b;id=1094026423;trail\r\n", 25) == 0);
    CHECK(arms_chunk_header(head, sizeof head, 65535, 4294967295u, 1) == 26);
    CHECK(memcmp(head, "ffff;id=4294967295;trail\r\n", 26) == 0);
    CHECK(arms_chunk_header(head, sizeof head, 0, 1, 0) == -1);
    CHECK(arms_chunk_header(head, sizeof head, 65536, 1, 0) == -1);
    CHECK(arms_chunk_header(head, 5, 1, 1, 0) == -1);
    for (i = 0; i < sizeof data; i++)
        data[i] = (uint8_t)(i * 7);
    n = arms_chunk_encode(out, sizeof out, data, 65535, 7, 0);
    CHECK(n == 65535 + 11 + 2);
    CHECK(arms_chunk_encode(out, 100, data, 99, 7, 0) == -1);
    CHECK(arms_chunk_encode(out, sizeof out, data, 65536, 7, 0) == -1);
    reset(&col, 0);
    CHECK(feed(&col, out, (size_t)n) == 0 && col.n == 1 && col.chunks[0].id == 7);
    CHECK(col.chunks[0].len == 65535 && memcmp(col.data, data, 65535) == 0);
    reset(&col, 0);
    CHECK(feed(&col, (const uint8_t *)ARMS_CHUNK_ECHO_REQUEST, strlen(ARMS_CHUNK_ECHO_REQUEST)) == 0);
    CHECK(feed(&col, (const uint8_t *)ARMS_CHUNK_END, strlen(ARMS_CHUNK_END)) == 0);
    CHECK(col.n == 2 && col.chunks[0].flags == (ARMS_CHUNK_F_ECHO_REQUEST | ARMS_CHUNK_F_TRAIL));
    CHECK(col.ended && col.chunks[1].flags == ARMS_CHUNK_F_LAST);
    printf("chunk encoder: header forms, 65535-byte chunk round trip, fixed chunks\n");
}

static uint32_t rng_state = 0x12345678u;

static uint32_t rnd(void)
{
    uint32_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return rng_state = x;
}

/* Random input, whole vs. split: the outcome must not depend on where the bytes are cut, and
 * nothing may read outside the buffers (ASan / UBSan natively). */
static void test_chunk_fuzz(void)
{
    static const char *const pieces[] = {"4", "0", "a", "F", ";", "id=", "12", "trail", "echo",
                                         "\r\n", "\r", "\n", "abcd", "echo-request", "-", ";id=9"};
    uint8_t buf[600];
    int iter;
    for (iter = 0; iter < 20000; iter++) {
        size_t len = 0, cut, i;
        int mode = (int)(rnd() % 3);
        if (mode == 0) {
            len = rnd() % 300;
            for (i = 0; i < len; i++)
                buf[i] = (uint8_t)rnd();
        } else {
            int k, count = (int)(rnd() % 60);
            for (k = 0; k < count; k++) {
                const char *p = pieces[rnd() % (sizeof pieces / sizeof pieces[0])];
                size_t pl = strlen(p);
                if (len + pl > sizeof buf)
                    break;
                memcpy(buf + len, p, pl);
                len += pl;
            }
        }
        /* a heap copy of exactly len bytes so that ASan sees any over-read */
        uint8_t *heap = malloc(len ? len : 1);
        if (heap == NULL)
            abort();
        memcpy(heap, buf, len);
        cut = len ? rnd() % (len + 1) : 0;
        reset(&col, 4096);
        reset(&col2, 4096);
        feed(&col, heap, len);
        if (!col2.error)
            feed(&col2, heap, cut);
        if (!col2.error)
            feed(&col2, heap + cut, len - cut);
        free(heap);
        CHECK((col.error != 0) == (col2.error != 0));
        if (!col.error) {
            CHECK(col.n == col2.n && col.data_len == col2.data_len);
            CHECK(memcmp(col.data, col2.data, col.data_len) == 0);
            for (i = 0; i < col.n; i++)
                CHECK(col.chunks[i].id == col2.chunks[i].id
                      && col.chunks[i].flags == col2.chunks[i].flags
                      && col.chunks[i].len == col2.chunks[i].len);
        }
    }
    printf("chunk fuzz: 20000 random inputs, outcome independent of the split\n");
}

/* ------------------------------------------------------------------ keepalive */

static void test_keepalive(void)
{
    struct arms_keepalive k;
    memset(&k, 0, sizeof k);
    CHECK(arms_keepalive_poll(&k, 123, 0) == ARMS_KA_NONE);
    CHECK(arms_keepalive_next_deadline(&k) == UINT64_MAX);
    arms_keepalive_start(&k, 1000, 3000);
    CHECK(arms_keepalive_next_deadline(&k) == 4000);
    CHECK(arms_keepalive_poll(&k, 3999, 0) == ARMS_KA_NONE);
    arms_keepalive_confirmed(&k, 2000); /* inactivity: 2000 + 10000 */
    CHECK(arms_keepalive_poll(&k, 4000, 1) == ARMS_KA_NONE); /* writing: retry 1 s later */
    CHECK(arms_keepalive_next_deadline(&k) == 5000);
    CHECK(arms_keepalive_poll(&k, 5000, 0) == ARMS_KA_SEND_ECHO);
    CHECK(arms_keepalive_next_deadline(&k) == 8000);
    arms_keepalive_echo_answered(&k);
    CHECK(arms_keepalive_poll(&k, 8000, 0) == ARMS_KA_SEND_ECHO);
    CHECK(arms_keepalive_poll(&k, 11000, 0) == ARMS_KA_DEAD); /* unanswered at the next tick */
    arms_keepalive_start(&k, 20000, 0);                       /* reconnect, default 60 s */
    CHECK(arms_keepalive_next_deadline(&k) == 80000);
    arms_keepalive_activity(&k, 30000);
    CHECK(arms_keepalive_poll(&k, 79999, 0) == ARMS_KA_NONE);
    arms_keepalive_stop(&k);
    CHECK(arms_keepalive_poll(&k, 1000000, 0) == ARMS_KA_NONE);
    arms_keepalive_start(&k, 0, 5000);
    arms_keepalive_confirmed(&k, 0);
    arms_keepalive_echo_answered(&k);
    CHECK(arms_keepalive_poll(&k, 5000, 0) == ARMS_KA_SEND_ECHO);
    arms_keepalive_echo_answered(&k);
    CHECK(arms_keepalive_poll(&k, 10000, 0) == ARMS_KA_SEND_ECHO);
    arms_keepalive_echo_answered(&k);
    CHECK(arms_keepalive_poll(&k, 10001, 0) == ARMS_KA_IDLE); /* 10 s after the confirmation */
    printf("keepalive: echo ticks, busy retry, dead tunnel, inactivity\n");
}

/* ------------------------------------------------------------------ sender thread */

#ifdef ARMS_TEST_SENDER
static void fill_stats(struct arms_hb_packet *p, void *arg)
{
    int *calls = arg;
    (*calls)++;
    arms_hb_set_cpu_usage(p, 0, 42);
}

static int recv_one(int fd, uint8_t *buf, size_t cap, int timeout_ms)
{
    struct pollfd pfd = {fd, POLLIN, 0};
    if (poll(&pfd, 1, timeout_ms) != 1)
        return -1;
    return (int)recv(fd, buf, cap, 0);
}

static void test_sender(void)
{
    static struct arms_hb_sender s;
    struct sockaddr_in sin;
    socklen_t sl = sizeof sin;
    uint8_t id[16], buf[2048];
    struct arms_hb_packet expect;
    struct arms_hb_sender_stats st;
    int fd, calls = 0, i, n;
    uint64_t seq;

    fd = socket(AF_INET, SOCK_DGRAM, 0);
    CHECK(fd >= 0);
    memset(&sin, 0, sizeof sin);
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK(bind(fd, (struct sockaddr *)&sin, sizeof sin) == 0);
    CHECK(getsockname(fd, (struct sockaddr *)&sin, &sl) == 0);
    CHECK(arms_hb_parse_distribution_id("0001-1234-5678-9ABC-DEF0-1122-3344-5566", id) == 0);

    /* in-thread callback mode */
    CHECK(arms_hb_sender_init(&s) == 0);
    CHECK(arms_hb_sender_configure(&s, id, 50, 10, AF_UNSPEC) == 0);
    CHECK(arms_hb_sender_add_server(&s, "127.0.0.1", ntohs(sin.sin_port),
                                    (const uint8_t *)"key", 3) == 0);
    CHECK(arms_hb_sender_add_server(&s, "not-numeric.example", 1, (const uint8_t *)"k", 1) == 1);
    arms_hb_sender_set_callback(&s, fill_stats, &calls);
    CHECK(arms_hb_sender_start(&s) == 0);
    memset(&expect, 0, sizeof expect);
    arms_hb_set_distribution_id(&expect, id);
    arms_hb_set_cpu_usage(&expect, 0, 42);
    CHECK(arms_hb_sign(&expect, (const uint8_t *)"key", 3) == 0);
    for (i = 0; i < 3; i++) {
        n = recv_one(fd, buf, sizeof buf, 10000);
        CHECK(n == expect.len && memcmp(buf, expect.buf, (size_t)n) == 0);
    }
    arms_hb_sender_stop(&s);
    arms_hb_sender_get_stats(&s, &st);
    CHECK(st.sent >= 3 && st.errors >= 3 && calls >= 3);

    /* request / publish mode */
    arms_hb_sender_set_callback(&s, NULL, NULL);
    arms_hb_sender_clear_servers(&s);
    CHECK(arms_hb_sender_add_server(&s, "127.0.0.1", ntohs(sin.sin_port),
                                    (const uint8_t *)"key", 3) == 0);
    while (recv_one(fd, buf, sizeof buf, 0) > 0) {
    }
    CHECK(arms_hb_sender_start(&s) == 0);
    seq = arms_hb_sender_wait_request(&s, 0, 10000);
    CHECK(seq > 0);
    memset(&expect, 0, sizeof expect);
    arms_hb_set_radiowave(&expect, 5, 1, 31, 0, 15);
    arms_hb_sender_publish(&s, &expect, seq);
    arms_hb_set_distribution_id(&expect, id);
    CHECK(arms_hb_sign(&expect, (const uint8_t *)"key", 3) == 0);
    n = recv_one(fd, buf, sizeof buf, 10000);
    CHECK(n == expect.len && memcmp(buf, expect.buf, (size_t)n) == 0);
    arms_hb_sender_pause(&s, 1);
    CHECK(!arms_hb_sender_is_running(&s));
    arms_hb_sender_pause(&s, 0);
    CHECK(arms_hb_sender_is_running(&s));
    arms_hb_sender_destroy(&s); /* stops the thread */
    close(fd);
    printf("sender: in-thread callback and request/publish over loopback UDP\n");
}
#endif

int main(void)
{
    test_hb_vectors();
    test_hb_rules();
    test_chunk_streams();
    test_chunk_forms();
    test_chunk_encode();
    test_chunk_fuzz();
    test_keepalive();
#ifdef ARMS_TEST_SENDER
    test_sender();
#endif
    if (failures) {
        printf("FAILED: %d\n", failures);
        return 1;
    }
    printf("ALL OK\n");
    return 0;
}
