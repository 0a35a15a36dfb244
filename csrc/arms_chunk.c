/* Tunnel chunk codec: see arms_chunk.h for the contracts. libc only, no allocation. */
#include "arms_chunk.h"

#include <string.h>

const char ARMS_CHUNK_ECHO_REQUEST[] = "4;echo-request;trail\r\necho\r\n";
const char ARMS_CHUNK_ECHO_RESPONSE[] = "4;echo-response;trail\r\necho\r\n";
const char ARMS_CHUNK_END[] = "0\r\n\r\n";

enum {
    S_HEADER = 0, /* collecting the header line */
    S_DATA,       /* handing out data */
    S_CR,         /* expecting the CR after the data */
    S_LF,         /* expecting the LF after the data */
    S_DONE        /* the zero chunk is complete */
};

static int hexval(uint8_t c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static int token_is(const uint8_t *t, size_t n, const char *word)
{
    size_t wl = strlen(word);
    return n == wl && memcmp(t, word, wl) == 0;
}

/* Parse hdr[0..n) (CR LF excluded). Returns 0 or an ARMS_CHUNK_E_* code. */
static int parse_header(struct arms_chunk_decoder *d, const uint8_t *h, size_t n)
{
    size_t i = 0, sig = 0;
    uint64_t size = 0;
    uint32_t max = d->max_chunk != 0 ? d->max_chunk : ARMS_CHUNK_DEFAULT_MAX;
    uint32_t id = 0, flags = 0;

    for (; i < n && h[i] != ';'; i++) {
        int v = hexval(h[i]);
        if (v < 0)
            return ARMS_CHUNK_E_SIZE;
        if (sig > 0 || v != 0)
            sig++;
        if (sig > 8)
            return ARMS_CHUNK_E_TOO_BIG;
        size = size << 4 | (uint64_t)v;
    }
    if (i == 0)
        return ARMS_CHUNK_E_SIZE;
    if (size > max)
        return ARMS_CHUNK_E_TOO_BIG;
    while (i < n) { /* h[i] == ';' */
        size_t start = ++i, tl;
        const uint8_t *t = h + start;
        while (i < n && h[i] != ';')
            i++;
        tl = i - start;
        if (tl >= 3 && memcmp(t, "id=", 3) == 0) {
            uint64_t v = 0;
            size_t k;
            if (tl == 3 || tl > 13)
                return ARMS_CHUNK_E_ID;
            for (k = 3; k < tl; k++) {
                if (t[k] < '0' || t[k] > '9')
                    return ARMS_CHUNK_E_ID;
                v = v * 10 + (uint64_t)(t[k] - '0');
            }
            if (v > 0xffffffffu)
                return ARMS_CHUNK_E_ID;
            id = (uint32_t)v;
        } else if (token_is(t, tl, "trail")) {
            flags |= ARMS_CHUNK_F_TRAIL;
        } else if (token_is(t, tl, "echo") || token_is(t, tl, "echo-response")) {
            flags |= ARMS_CHUNK_F_ECHO_RESPONSE;
        } else if (token_is(t, tl, "echo-request")) {
            flags |= ARMS_CHUNK_F_ECHO_REQUEST;
        }
        /* other extensions are ignored */
    }
    if (size == 0)
        flags |= ARMS_CHUNK_F_LAST;
    d->size = (uint32_t)size;
    d->remaining = (uint32_t)size;
    d->id = id;
    d->flags = flags;
    return 0;
}

static long fail(struct arms_chunk_decoder *d, int code)
{
    d->error = code;
    return -1;
}

long arms_chunk_decode(struct arms_chunk_decoder *d, const uint8_t *buf, size_t len,
                       struct arms_chunk_event *ev)
{
    size_t pos = 0;

    ev->kind = ARMS_CHUNK_EV_NEED_MORE;
    ev->data = NULL;
    ev->data_len = 0;
    if (d->error != 0)
        return -1;
    while (pos < len) {
        uint8_t c;
        switch (d->state) {
        case S_HEADER:
            c = buf[pos++];
            if (c == '\n') {
                size_t k, n;
                int rc;
                if (d->hdr_len == 0 || d->hdr[d->hdr_len - 1] != '\r')
                    return fail(d, ARMS_CHUNK_E_HEADER); /* bare LF */
                n = d->hdr_len - 1;
                for (k = 0; k < n; k++)
                    if (d->hdr[k] == '\r')
                        return fail(d, ARMS_CHUNK_E_HEADER);
                rc = parse_header(d, d->hdr, n);
                if (rc != 0)
                    return fail(d, rc);
                d->hdr_len = 0;
                d->state = d->remaining > 0 ? S_DATA : S_CR;
                break;
            }
            if (d->hdr_len >= ARMS_CHUNK_MAX_HEADER)
                return fail(d, ARMS_CHUNK_E_HEADER); /* 257th byte and not the LF */
            d->hdr[d->hdr_len++] = c;
            break;
        case S_DATA: {
            size_t take = len - pos;
            if (take > d->remaining)
                take = d->remaining;
            d->remaining -= (uint32_t)take;
            if (d->remaining == 0)
                d->state = S_CR;
            ev->kind = ARMS_CHUNK_EV_DATA;
            ev->data = buf + pos;
            ev->data_len = take;
            return (long)(pos + take);
        }
        case S_CR:
            if (buf[pos++] != '\r')
                return fail(d, ARMS_CHUNK_E_CRLF);
            d->state = S_LF;
            break;
        case S_LF:
            if (buf[pos++] != '\n')
                return fail(d, ARMS_CHUNK_E_CRLF);
            ev->id = d->id;
            ev->flags = d->flags;
            ev->size = d->size;
            if (d->flags & ARMS_CHUNK_F_LAST) {
                d->state = S_DONE;
                ev->kind = ARMS_CHUNK_EV_END;
            } else {
                d->state = S_HEADER;
                ev->kind = ARMS_CHUNK_EV_CHUNK;
            }
            return (long)pos;
        default: /* S_DONE */
            return fail(d, ARMS_CHUNK_E_AFTER_END);
        }
    }
    return (long)pos;
}

int arms_chunk_header(char *out, size_t cap, uint32_t size, uint32_t id, int trail)
{
    char tmp[ARMS_CHUNK_HEADER_BUFSZ];
    static const char hex[] = "0123456789abcdef";
    char digits[12];
    size_t n = 0, k;
    int nd = 0;

    if (size == 0 || size > ARMS_CHUNK_MAX_WRITE || out == NULL)
        return -1;
    for (; size != 0; size >>= 4)
        digits[nd++] = hex[size & 0xf];
    while (nd > 0)
        tmp[n++] = digits[--nd];
    memcpy(tmp + n, ";id=", 4);
    n += 4;
    do {
        digits[nd++] = (char)('0' + id % 10);
        id /= 10;
    } while (id != 0);
    while (nd > 0)
        tmp[n++] = digits[--nd];
    if (trail) {
        memcpy(tmp + n, ";trail", 6);
        n += 6;
    }
    tmp[n++] = '\r';
    tmp[n++] = '\n';
    if (n > cap)
        return -1;
    for (k = 0; k < n; k++)
        out[k] = tmp[k];
    return (int)n;
}

long arms_chunk_encode(uint8_t *out, size_t cap, const uint8_t *data, size_t len, uint32_t id,
                       int trail)
{
    char head[ARMS_CHUNK_HEADER_BUFSZ];
    int hl;
    if (len == 0 || len > ARMS_CHUNK_MAX_WRITE || data == NULL || out == NULL)
        return -1;
    hl = arms_chunk_header(head, sizeof head, (uint32_t)len, id, trail);
    if (hl < 0 || (size_t)hl + len + 2 > cap)
        return -1;
    memcpy(out, head, (size_t)hl);
    memcpy(out + hl, data, len);
    out[hl + len] = '\r';
    out[hl + len + 1] = '\n';
    return (long)((size_t)hl + len + 2);
}
